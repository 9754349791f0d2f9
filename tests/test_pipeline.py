"""The batch runner: CSV input, stages, counts, stopping."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from dpagent.agents import AGENTS
from dpagent.backends import Product, Simulation
from dpagent.pipeline import InputError, Pipeline, ProductResult, read_products, run_batch


def write(tmp_path: Path, text: str, name: str = "products.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


# --- CSV ------------------------------------------------------------------------------


def test_valid_rows_are_read_and_malformed_rows_reported_with_their_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\ufeffSKU, Name ,brand,price,description,extra\n"  # BOM, case, spaces, extra column
        "A-1,Intake,K&N,10.5,Fits 2015 Ford F-150,x\n"
        ",No sku,K&N,1,,x\n"
        "A-2,,K&N,1,,x\n"
        "A-3,Bad price,K&N,ten,,x\n"
        "A-4,Negative,K&N,-1,,x\n"
        "bad sku!,Name,K&N,1,,x\n"
        "A-1,Duplicate,K&N,1,,x\n"
        "A-5,Too few fields\n"
        "\n"
        '"A-6","Multi\nline name",Borla,,"Fits 2018 Jeep Wrangler",x\n'
        "A-7,Last,Borla,,,x\n",
    )
    loaded = read_products(path)
    assert [p.sku for p in loaded.products] == ["A-1", "A-6", "A-7"]
    assert loaded.products[0] == Product("A-1", "Intake", "K&N", 10.5, "Fits 2015 Ford F-150")
    assert loaded.products[2].price is None
    messages = {e.line: e.message for e in loaded.errors}
    assert list(messages) == [3, 4, 5, 6, 7, 8, 9]
    assert messages[3] == "sku is empty"
    assert messages[4] == "name is empty"
    assert "not a number" in messages[5]
    assert ">= 0" in messages[6]
    assert "bad sku!" in messages[7]
    assert messages[8] == "duplicate sku A-1 (first on line 2)"
    assert messages[9] == "expected 6 fields (as in the header), found 2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        ("sku,name\n", "no product rows after the header"),
        ("sku,title\nA-1,x\n", "lacks the required column(s) name"),
        ("sku,name,sku\nA,b,c\n", "named twice"),
    ],
)
def test_unusable_files_raise_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_products(write(tmp_path, text))


def test_missing_file_directory_and_binary_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_products(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="is a directory"):
        read_products(tmp_path)
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"sku,name\nA,\xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_products(binary)


def test_a_row_the_csv_module_rejects_is_skipped_not_fatal(tmp_path: Path) -> None:
    import csv

    huge = "x" * (csv.field_size_limit() + 10)
    path = write(tmp_path, f'sku,name\nA-1,ok\nA-2,"{huge}"\nA-3,ok\n')
    loaded = read_products(path)
    assert [p.sku for p in loaded.products] == ["A-1", "A-3"]
    assert len(loaded.errors) == 1 and "not valid CSV" in loaded.errors[0].message


def test_the_example_file_is_valid() -> None:
    loaded = read_products(Path(__file__).resolve().parents[1] / "examples" / "products.csv")
    assert len(loaded.products) >= 10 and loaded.errors == []


# --- running --------------------------------------------------------------------------


def products(count: int, seed: int = 0) -> list[Product]:
    catalog = Simulation.create("healthy", seed=seed).catalog
    return [catalog.product(i) for i in range(count)]


def test_every_product_goes_through_the_three_agents_and_is_counted(
    registry: CollectorRegistry,
) -> None:
    simulation = Simulation.create("healthy", seed=2, time_scale=0)
    pipeline = Pipeline.simulated(simulation, registry=registry)
    seen: list[ProductResult] = []
    summary = run_batch(pipeline, products(30), workers=4, on_result=seen.append)
    assert summary.planned == 30 and len(summary.results) == 30 == len(seen)
    assert summary.succeeded + summary.failed == 30 and summary.not_finished == 0
    assert not summary.interrupted
    counts = summary.agent_counts()
    top_level = {
        "image_sourcing": "source_images",
        "vehicle_applications": "process_fitment",
        "bigcommerce_upload": "upload_product",
    }
    for agent in AGENTS:
        done = {
            outcome: value(registry, "dpagent_batch_items_processed_total", agent=agent,
                           outcome=outcome)
            for outcome in ("success", "failure")
        }  # fmt: skip
        assert done == {"success": counts[agent]["succeeded"], "failure": counts[agent]["failed"]}
        assert sum(done.values()) == 30
        ops = "dpagent_operations_total"
        operation = top_level[agent]
        assert (
            value(registry, ops, agent=agent, operation=operation, outcome="success")
            == (counts[agent]["succeeded"])
        )
        assert value(registry, "dpagent_batch_size_items_count", agent=agent) == 1
        assert value(registry, "dpagent_batch_size_items_sum", agent=agent) == 30


def test_outcomes_do_not_depend_on_the_number_of_workers() -> None:
    def run(workers: int) -> dict[str, bool]:
        registry = CollectorRegistry()
        pipeline = Pipeline.simulated(
            Simulation.create("degraded", seed=9, time_scale=0), registry=registry
        )
        summary = run_batch(pipeline, products(40, seed=9), workers=workers)
        return {r.product.sku: r.ok for r in summary.results}

    one, many = run(1), run(8)
    assert one == many
    assert not all(one.values())  # the degraded profile does fail some


def test_a_stop_mid_batch_finishes_products_in_flight_and_starts_no_more(
    registry: CollectorRegistry,
) -> None:
    simulation = Simulation.create("healthy", seed=4, time_scale=0.002)
    pipeline = Pipeline.simulated(simulation, registry=registry)
    stop = threading.Event()
    finished: list[ProductResult] = []

    def on_result(result: ProductResult) -> None:
        finished.append(result)
        if len(finished) == 5:
            stop.set()

    summary = run_batch(pipeline, products(200), workers=3, stop=stop, on_result=on_result)
    assert summary.interrupted
    assert 5 <= len(summary.results) <= 5 + 2 * 3  # what was queued or in flight
    assert summary.not_finished == 200 - summary.succeeded - summary.failed > 100
    for result in summary.results:
        # A product stopped between stages ran its stages completely, or is marked.
        assert result.interrupted or len(result.stages) == 3
    # Every stage that ran was counted once, no more.
    stages_run = sum(len(r.stages) for r in summary.results)
    counted = sum(
        value(registry, "dpagent_batch_items_processed_total", agent=a, outcome=o)
        for a in AGENTS
        for o in ("success", "failure")
    )
    assert counted == stages_run


def test_a_crashing_stage_fails_the_product_not_the_batch(registry: CollectorRegistry) -> None:
    pipeline = Pipeline.simulated(Simulation.create("healthy", time_scale=0), registry=registry)

    def broken(product: Product) -> None:
        raise RuntimeError("bug")

    pipeline.fitment.process = broken  # type: ignore[method-assign,assignment]
    summary = run_batch(pipeline, products(3), workers=2)
    assert summary.failed == 3
    assert all("RuntimeError: bug" in " ".join(r.errors) for r in summary.results)
    assert value(registry, "dpagent_batch_items_processed_total", agent="vehicle_applications",
                 outcome="failure") == 3  # fmt: skip


def test_workers_must_be_positive() -> None:
    pipeline = Pipeline.simulated(
        Simulation.create("healthy", time_scale=0), registry=CollectorRegistry()
    )
    with pytest.raises(ValueError, match="workers"):
        run_batch(pipeline, [], workers=0)
