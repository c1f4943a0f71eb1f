"""The paper's own figures shipped in the package (ilgnet.paper.paper_figures) against the typed-in copy in
../shared/data/paper, the paper's nets in its tables (ilgnet.paper.tables), and the fine-tuning recipes
(ilgnet.nets.recipes) against the paper's text."""
from __future__ import annotations

import csv

import pytest

from ilgnet.nets import fixed_layers, train_val
from ilgnet.paper import paper_figures
from ilgnet.paper.tables import PAPER_METHOD, PAPER_NAMES, PAPER_TIMES, RELEASED, paper_accuracy, table_cells


def test_the_packaged_figures_are_the_papers_as_typed_in(shared_data):
    path = shared_data / "paper" / "paper_tables.csv"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    packaged = paper_figures.figures()
    assert len(packaged) == len(rows) == 47
    for row, figure in zip(rows, packaged):
        assert (figure.table, figure.method, figure.family, figure.database, figure.source) == \
            (row["table"], row["method"], row["family"], row["database"], row["source"])
        assert figure.delta == (int(row["delta"]) if row["delta"] else None)
        assert figure.accuracy == pytest.approx(float(row["accuracy_pct"]) / 100, abs=1e-12)
        assert figure.training_days == (float(row["training_days"]) if row["training_days"] else None)
        assert figure.test_seconds == (float(row["test_seconds"]) if row["test_seconds"] else None)


def test_every_ilgnet_figure_of_tables_2_to_4_has_its_cell():
    by_method = {name: variant for variant, name in PAPER_NAMES.items() if variant != RELEASED}
    printed = [f for f in paper_figures.figures() if f.family == "ilgnet" and f.table in ("2", "3", "4")]
    assert len(printed) == 19          # Table 2: 10, Table 3: 5, Table 4: 4 rows (accuracy, days, seconds)
    for figure in printed:
        variant = by_method[figure.method]
        assert paper_accuracy(variant, figure.column)[0] == figure.accuracy
    cells = {table: table_cells(table) for table in ("table2", "table3", "table4")}
    # Tables 2 and 3: the paper's five nets, in its order, and the released model's row.
    assert [v for v, p in cells["table3"]] == ["ilgnet-noinc", "googlenet-bn-third", "ilgnet-bn", "ilgnet-inc3",
                                               "ilgnet-inc4", "ilgnet"]
    assert [PAPER_NAMES[v] for v, p in cells["table2"] if p == "ava1-delta1"] == [
        "ILGNet-without-Inc.", "1/3 GoogLeNetV1-BN", "ILGNet-Inc.V1-BN", "ILGNet-Inc.V3", "ILGNet-Inc.V4"]
    assert {p for _, p in cells["table4"]} == {"ava1-delta0"}
    for table in ("table2", "table3"):
        for variant, profile in cells[table]:
            column = {"ava1-delta0": "AVA1, delta 0", "ava1-delta1": "AVA1, delta 1", "ava2": "AVA2"}[profile]
            assert paper_accuracy(variant, column) is not None, (variant, column)
    # The released model is compared with the figures the paper prints for ILGNet-Inc.V1-BN, and says so.
    value, source = paper_accuracy(RELEASED, "AVA2")
    assert value == pytest.approx(0.855) and "no batch normalization" in source
    assert PAPER_METHOD[RELEASED] == "ILGNet-Inc.V1-BN"
    assert PAPER_TIMES["ilgnet-bn"] == ("4 days", "0.31 s")
    assert PAPER_TIMES["googlenet-bn-full"] == ("16 days", "0.84 s")
    assert [f.accuracy for f in paper_figures.slides()] == pytest.approx([0.7925, 0.8562])
    assert len(paper_figures.prior("2")) == 17 and len(paper_figures.prior("3")) == 9


def _learning_rates(net) -> dict[str, list[float]]:
    return {layer.name: [p.lr_mult for p in layer.param] for layer in net.layer if layer.param}


def test_the_paper_recipe_fixes_the_pretrained_inception_layers_and_trains_the_connected_layers():
    """Sec. 1: "the inception modules are fixed and the connected local and global features layers are fine tuned".
    Every pretrained layer of the stem and of inception_3a, 3b, 4a has lr_mult 0; the
    connected local/global layers (temp1-3, temp_cjy, the classifier) and the global branch's loss1/conv learn."""
    net = train_val("ilgnet-bn", train_lmdb="t", val_lmdb="v", mean_file="m", train_batch=1, val_batch=1,
                    recipe="paper")
    rates = _learning_rates(net)
    convolutions = [layer.name for layer in net.layer if layer.type == "Convolution"]
    trunk = [name for name in convolutions if name.startswith(("conv1/", "conv2/", "inception_"))]
    assert len(trunk) == 21 and {m.split("/")[0] for m in trunk if m.startswith("inception")} == {
        "inception_3a", "inception_3b", "inception_4a"}
    assert all(rates[name] == [0, 0] for name in trunk)
    assert fixed_layers("ilgnet-bn", "paper") == trunk
    for head in ("temp1", "temp2", "temp3", "temp_cjy", "loss1/classifier_cjy", "loss1/conv"):
        assert all(rate > 0 for rate in rates[head]), head
    # BatchNorm's Scale layers start fresh (bvlc_googlenet has none) and so learn.
    assert rates["inception_3a/1x1/scale"] == [1, 1]


def test_the_second_reading_fine_tunes_the_last_two_inception_modules():
    """Sec. 5: "The bottom features are shared ... The high level features together with 2 inception modules are fine
    tuned ... We fixed the shared inception layers". The stem and inception_3a are fixed; inception_3b and 4a learn
    with the head."""
    net = train_val("ilgnet-bn", train_lmdb="t", val_lmdb="v", mean_file="m", train_batch=1, val_batch=1,
                    recipe="paper-sec5")
    rates = _learning_rates(net)
    fixed = fixed_layers("ilgnet-bn", "paper-sec5")
    assert {name.split("/")[0] for name in fixed} == {"conv1", "conv2", "inception_3a"}
    assert all(rates[name] == [0, 0] for name in fixed)
    assert rates["inception_3b/1x1"] == [1, 2] and rates["inception_4a/5x5"] == [1, 2]
    released = _learning_rates(train_val("ilgnet-bn", train_lmdb="t", val_lmdb="v", mean_file="m", train_batch=1,
                                         val_batch=1))
    assert not any(rate == 0 for name, rates_ in released.items() if "/bn" not in name for rate in rates_)
    assert released["temp_cjy"] == [10, 20] and fixed_layers("ilgnet-bn", "released") == []


def test_the_net_without_inception_is_built_on_the_batchnorm_net():
    """Sec. 4.2: "a modified network of ILGNet-Inc.V1-BN: the ILGNet-without-Inc."."""
    net = train_val("ilgnet-noinc", train_lmdb="t", val_lmdb="v", mean_file="m", train_batch=1, val_batch=1)
    types = {layer.name: layer.type for layer in net.layer}
    assert "LRN" not in types.values() and types["conv3a/3x3/bn"] == "BatchNorm"
    assert not any(name.startswith("inception_") for name in types)
    # Its plain convolutions start fresh, so even the paper's recipe trains them; only the stem is fixed.
    assert fixed_layers("ilgnet-noinc", "paper") == ["conv1/7x7_s2", "conv2/3x3_reduce", "conv2/3x3"]
