#!/bin/sh
# Start Alertmanager with the webhook URL taken from the environment.
#
# Alertmanager 0.25 neither expands environment variables in its config nor supports
# `url_file` in webhook_configs, so this script writes a copy of alertmanager.yml with the
# placeholder URL replaced by $DPAGENT_ALERT_WEBHOOK_URL, then execs Alertmanager on it.
# Extra arguments are passed on (e.g. --storage.path=/alertmanager).
#
#   DPAGENT_ALERT_WEBHOOK_URL      where notifications are POSTed (http or https URL)
#   DPAGENT_ALERTMANAGER_TEMPLATE  config to read   (default /etc/alertmanager/alertmanager.yml)
#   DPAGENT_ALERTMANAGER_CONFIG    config to write  (default /tmp/alertmanager.yml)
#   ALERTMANAGER_BIN               binary to exec   (default /bin/alertmanager, the image's;
#                                  Debian's is /usr/bin/prometheus-alertmanager)
set -eu

template="${DPAGENT_ALERTMANAGER_TEMPLATE:-/etc/alertmanager/alertmanager.yml}"
config="${DPAGENT_ALERTMANAGER_CONFIG:-/tmp/alertmanager.yml}"
placeholder='http://dpagent-alert-webhook\.invalid/alerts'
url="${DPAGENT_ALERT_WEBHOOK_URL:-}"

if [ -z "$url" ]; then
  echo "alertmanager-entrypoint: DPAGENT_ALERT_WEBHOOK_URL is not set;" \
    "webhook notifications go to the .invalid placeholder and fail" >&2
else
  case "$url" in
    http://*|https://*) ;;
    *) echo "alertmanager-entrypoint: DPAGENT_ALERT_WEBHOOK_URL must be an http(s) URL," \
         "got: $url" >&2
       exit 2 ;;
  esac
  case "$url" in
    *"'"*|*" "*) echo "alertmanager-entrypoint: DPAGENT_ALERT_WEBHOOK_URL must not contain" \
         "quotes or spaces" >&2
       exit 2 ;;
  esac
  # Escape what sed treats specially in a replacement: the delimiter, & and backslash.
  escaped=$(printf '%s\n' "$url" | sed 's/[|&\\]/\\&/g')
  sed "s|$placeholder|$escaped|g" "$template" > "$config.tmp"
  mv "$config.tmp" "$config"
  template="$config"
fi

exec "${ALERTMANAGER_BIN:-/bin/alertmanager}" --config.file="$template" "$@"
