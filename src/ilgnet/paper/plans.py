"""A campaign's plan: the training runs that fill the paper's tables, each one net variant trained with one solver
profile and one seed (with overrides), where their data folders are and where the runs go.

Built-in plans: `table2`, `table3`, `table4`, and `paper` (all three), whose runs fine-tune with the paper's recipe
(ilgnet.nets.recipes; the released-model rows with the released one), and `recipes`: ILGNet-Inc.V1-BN on AVA1 (delta
0) and AVA2 with every recipe, to tell which reading of the paper comes closest to its figures, and `official`:
ILGNet-Inc.V1-BN on AVA's official split (seeds 1-3, the paper's recipe, Table 1's AVA1 solver: labels by threshold
5), reading DATA/official/ava1 as `make official-lmdb` writes it (`ilgnet split official` + `ilgnet lmdb`); `ilgnet
test` and the report add SRCC and PLCC against AVA's mean votes. A plan file (TOML) names tables, runs of its own,
or both; relative paths in it are taken from the working directory, as the commands' own arguments are:

    name = "my-plan"             # default: the file's name without .toml
    tables = ["table3"]          # or {table3 = [1, 2], table2 = [1]}: each table with its seeds
    seeds = [1, 2]               # seeds of the tables listed without theirs (default: 1, 2)
    runs = "runs/my-plan"        # the runs folder (default: runs/<name>)
    data = "data"                # the folder holding the data folders (default: data)
    models = "models"            # where the ImageNet weights are (default: models)
    snapshots = "all"            # what a finished run keeps: all its snapshots, its "final" caffemodel, or "none"
    recipe = "paper"             # fine-tuning recipe of the tables' runs and of [[run]]s without one (default:
                                 #   released, as `ilgnet train`; the built-in plans use paper); the released
                                 #   model's rows always use released

    [train]                      # overrides for every run: max_iter, train_batch, val_batch, display,
    max_iter = 2000              #   test_interval, snapshot, base_lr (default: the solver profile's)

    [variant.ilgnet-inc4]        # overrides for the tables' runs of one net variant, over [train]'s
    max_iter = 500

    [synthetic]                  # data folders missing from `data` are made from a synthetic AVA
    images = 600                 #   (ilgnet.data.synthetic): rows of AVA.txt, and its seed
    seed = 1

    [[run]]                      # a run of its own
    variant = "ilgnet"
    profile = "ava2"
    seeds = [3]
    name = "ilgnet-ava2-low-lr"  # needed only where another run of the plan has the same variant, profile, seed
    recipe = "paper-sec5"        #   and recipe
    tables = ["table3"]          # the tables it counts in (default: none)
    train = {base_lr = 1e-6}

The data folder of a run is DATA/<set>[-<resize>]: the set is ava1 (profiles ava1-delta0, published-ava1),
ava1-delta1 or ava2, as `make ava1-lmdb` / `make ava2-lmdb` name them, and the Inception-v3/v4 variants read LMDBs
built at 320 (data/ava2-320).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ilgnet import defaults
from ilgnet.errors import BadInput, MissingFile, about, lookup
from ilgnet.fileio import read_text
from ilgnet.nets import get_variant
from ilgnet.nets.recipes import DEFAULT as RELEASED_RECIPE
from ilgnet.nets.recipes import RECIPES
from ilgnet.nets.solvers import get_profile
from ilgnet.paper.plan_fields import TRAIN_FIELDS, by_variant as _by_variant, check_train as _check_train  # noqa: F401
from ilgnet.paper.plan_fields import keys as _keys, path as _path, recipe as _recipe, seeds as _seeds, toml_document
from ilgnet.paper.tables import RELEASED, TABLES, table_cells

BUILT_IN = {"table2": ("table2",), "table3": ("table3",), "table4": ("table4",), "paper": TABLES, "recipes": (),
            "official": ()}
PAPER_RECIPE = "paper"
# The `recipes` plan: ILGNet-Inc.V1-BN on these profiles with every recipe.
RECIPE_COMPARISON = ("ilgnet-bn", ("ava1-delta0", "ava2"))
DEFAULT_SEEDS = (1, 2)
# The `official` plan: this net and solver profile on AVA's official split, in DATA/official, with these seeds.
OFFICIAL = ("ilgnet-bn", "ava1-delta0", Path("official"), (1, 2, 3))
DATA_DIR = Path("data")
DATA_SETS = {"ava1-delta0": "ava1", "published-ava1": "ava1", "ava1-delta1": "ava1-delta1", "ava2": "ava2",
             "published-ava2": "ava2"}
NAME_BYTES = 255            # a run's folder name, as most filesystems allow
SYNTHETIC_FIELDS = {"images": int, "seed": int}
SNAPSHOTS = ("all", "final", "none")


@dataclass(frozen=True)
class RunSpec:
    """One training run of a plan: `variant` with solver `profile` and Caffe's random_seed `seed`, the `train`
    overrides (TrainOptions fields, sorted (name, value) pairs) and the tables it counts in."""
    variant: str
    profile: str
    seed: int
    train: tuple[tuple[str, int | float], ...] = ()
    tables: tuple[str, ...] = ()
    given_name: str | None = None
    recipe: str = RELEASED_RECIPE

    @property
    def name(self) -> str:
        """The run folder's name: VARIANT-PROFILE[-RECIPE]-seedSEED (the recipe unless it is `released`) unless the
        plan names the run."""
        recipe = "" if self.recipe == RELEASED_RECIPE else f"-{self.recipe}"
        return self.given_name or f"{self.variant}-{self.profile}{recipe}-seed{self.seed}"

    options = property(lambda self: dict(self.train), doc="The train overrides as a dict.")

    @property
    def max_iter(self) -> int:
        """The iterations the run trains for: the override, else the profile's."""
        return self.options.get("max_iter") or get_profile(self.profile).max_iter

    @property
    def data_key(self) -> str:
        """The data folder's name under the plan's data folder: ava1, ava1-delta1 or ava2, with -320 for the
        variants whose LMDBs are built at 320."""
        resize = get_variant(self.variant).resize
        return DATA_SETS[self.profile] + ("" if resize == defaults.RESIZE else f"-{resize}")

    def record(self) -> dict:
        """What defines the run, as campaign.json keeps it (a run folder made by another plan is never reused)."""
        record = {"variant": self.variant, "profile": self.profile, "seed": self.seed, "train": self.options}
        # The released recipe is what every run was before recipes had a name: its records stay as they were.
        return record if self.recipe == RELEASED_RECIPE else {**record, "recipe": self.recipe}


@dataclass(frozen=True)
class Plan:
    """The runs of a campaign, where they go (`runs_dir/<run name>`) and where their data is (absolute paths)."""
    name: str
    runs: tuple[RunSpec, ...]
    runs_dir: Path
    data_dir: Path = DATA_DIR
    models_dir: Path = defaults.MODELS_DIR
    synthetic: dict | None = None
    """AVA.txt rows and seed of the synthetic AVA the missing data folders are made from (None: real AVA only)."""
    snapshots: str = "all"
    """What a finished (evaluated) run keeps of its snapshots: all, the final caffemodel, or none."""
    source: str = field(default="built-in", compare=False)
    makes_data: str = field(default="", compare=False)
    """How its missing data folders are made, where a campaign cannot make them itself ("" for the tables' AVA1/2)."""

    def __post_init__(self):
        # Absolute, so that processes and Ray workers started elsewhere find the same folders.
        for name in ("runs_dir", "data_dir", "models_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)).resolve())

    def run_dir(self, spec: RunSpec) -> Path:
        return self.runs_dir / spec.name

    def data_folder(self, spec: RunSpec) -> Path:
        return self.data_dir / spec.data_key

    def tables(self) -> tuple[str, ...]:
        """The tables at least one run counts in, in the paper's order."""
        return tuple(t for t in TABLES if any(t in spec.tables for spec in self.runs))


def table_runs(table: str, seeds, train: dict, recipe: str = PAPER_RECIPE,
               by_variant: dict[str, dict] | None = None) -> list[RunSpec]:
    """The runs of one of the paper's tables (ilgnet.paper.tables.table_cells) for each seed, fine-tuned with
    `recipe` (the released model's rows with the released recipe), with the `train` overrides and, over them, those
    of `by_variant` for their variant."""
    lookup(dict.fromkeys(TABLES), table, "table")
    by_variant = by_variant or {}
    return [RunSpec(v, p, seed, tuple(sorted({**train, **by_variant.get(v, {})}.items())), (table,),
                    recipe=RELEASED_RECIPE if v == RELEASED else recipe)
            for seed in seeds for v, p in table_cells(table)]


def recipe_runs(seeds, train: dict) -> list[RunSpec]:
    """The `recipes` plan's runs: RECIPE_COMPARISON's net on its profiles with every recipe, for each seed."""
    variant, profiles = RECIPE_COMPARISON
    overrides = tuple(sorted(train.items()))
    return [RunSpec(variant, p, seed, overrides, (), recipe=recipe) for seed in seeds for p in profiles
            for recipe in RECIPES]


def _merged(specs: list[RunSpec]) -> tuple[RunSpec, ...]:
    """The runs in order, one per name: a run that counts in several tables is trained once. BadInput when two
    different runs would share a name."""
    merged: dict[str, RunSpec] = {}
    for spec in specs:
        seen = merged.get(spec.name)
        if seen is None:
            merged[spec.name] = spec
        elif seen.record() == spec.record():
            merged[spec.name] = RunSpec(seen.variant, seen.profile, seen.seed, seen.train,
                                        tuple(dict.fromkeys(seen.tables + spec.tables)), seen.given_name, seen.recipe)
        else:
            raise BadInput(f"two runs of the plan are named {spec.name} but differ ({seen.record()} and "
                           f"{spec.record()}); give one a name of its own")
    return tuple(merged.values())


def built_in(name: str, *, seeds=None, runs_dir: Path | None = None, data_dir: Path | None = None,
             models_dir: Path = defaults.MODELS_DIR, train: dict | None = None) -> Plan:
    """A built-in plan (table2, table3, table4, paper, recipes, official) with `seeds` (default: 1, 2; official's
    1, 2, 3) and the `train` overrides for every run; `data_dir` holds its data folders (default: data, official's
    data/official)."""
    tables = lookup(BUILT_IN, name, "plan")
    _check_train(train or {}, f"plan {name}")
    official = name == "official"
    seeds = seeds or (OFFICIAL[3] if official else DEFAULT_SEEDS)
    specs = [spec for table in tables for spec in table_runs(table, seeds, train or {})]
    if name == "recipes":
        specs = recipe_runs(seeds, train or {})
    makes = ""
    if official:
        specs = [RunSpec(OFFICIAL[0], OFFICIAL[1], seed, tuple(sorted((train or {}).items())), recipe=PAPER_RECIPE)
                 for seed in seeds]
        data_dir = data_dir or DATA_DIR / OFFICIAL[2]
        folder = Path(data_dir).resolve() / DATA_SETS[OFFICIAL[1]]
        made = DATA_DIR / OFFICIAL[2] / DATA_SETS[OFFICIAL[1]]
        makes = (f"`make official-lmdb AVA_ROOT=DIR` in the toolkit makes {made}; "
                 f"elsewhere `ilgnet split official --ava-txt AVA_ROOT/AVA.txt --out {folder}` and "
                 f"`ilgnet lmdb --split {folder} --images AVA_ROOT/images`; see "
                 f"docs/DATA.md")
    return Plan(name, _merged(specs), Path(runs_dir or defaults.RUNS_DIR / name), Path(data_dir or DATA_DIR),
                Path(models_dir), makes_data=makes)


def _own_run(entry: dict, seeds: tuple[int, ...], train: dict, where: str,
             recipe: str = RELEASED_RECIPE) -> list[RunSpec]:
    """The runs of one [[run]] entry, one per seed (with the entry's recipe, else `recipe`)."""
    _keys(entry, {"variant", "profile", "seeds", "name", "tables", "train", "recipe"}, where)
    for key in ("variant", "profile"):
        if not isinstance(entry.get(key), str):
            raise BadInput(f"{where}: {key} is required, as a string")
    get_variant(entry["variant"])
    get_profile(entry["profile"])
    lookup(DATA_SETS, entry["profile"], "solver profile for a campaign")
    own = entry.get("train", {})
    if not isinstance(own, dict):
        raise BadInput(f"{where}: train must be a table of training options")
    _check_train(own, where)
    tables = entry.get("tables", [])
    if not isinstance(tables, list) or any(t not in TABLES for t in tables):
        raise BadInput(f"{where}: tables must be a list of {', '.join(TABLES)}, got {tables!r}")
    run_seeds = _seeds(entry["seeds"], where) if "seeds" in entry else seeds
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or len(run_seeds) > 1):
        raise BadInput(f"{where}: a run's name is a string, and a named run has one seed")
    if name is not None:
        from ilgnet.training.plan import run_folder

        run_folder(Path("."), name)             # one folder name, as `ilgnet train --name` takes
        if len(name.encode("utf-8", "surrogateescape")) > NAME_BYTES:
            raise BadInput(f"{where}: run name {name[:40]!r}... is longer than {NAME_BYTES} bytes")
    overrides = tuple(sorted({**train, **own}.items()))
    recipe = _recipe(entry["recipe"], where) if "recipe" in entry else recipe
    return [RunSpec(entry["variant"], entry["profile"], seed, overrides, tuple(tables), name, recipe)
            for seed in run_seeds]


def read_plan(path: Path) -> Plan:
    """A plan file (TOML; see the module docstring). BadInput naming the file (and the line, for TOML syntax) when it
    is not a plan."""
    path = Path(path)
    with about(path):
        document = toml_document(path, read_text(path))
        _keys(document, {"name", "tables", "seeds", "runs", "data", "models", "snapshots", "train", "synthetic", "run",
                         "recipe", "variant"}, str(path))
        by_variant = _by_variant(document)
        recipe = _recipe(document["recipe"], "recipe") if "recipe" in document else RELEASED_RECIPE
        snapshots = document.get("snapshots", "all")
        if snapshots not in SNAPSHOTS:
            raise BadInput(f"snapshots = {snapshots!r}: expected one of {', '.join(SNAPSHOTS)}")
        name = document.get("name", path.stem)
        seeds = _seeds(document["seeds"], "seeds") if "seeds" in document else DEFAULT_SEEDS
        train = document.get("train", {})
        if not isinstance(train, dict):
            raise BadInput("[train] must be a table of training options")
        _check_train(train, "[train]")
        tables = document.get("tables", [])
        if isinstance(tables, list):
            tables = {table: list(seeds) for table in tables}
        if not isinstance(tables, dict):
            raise BadInput(f"tables must be a list of table names or a table of table = [seeds], got {tables!r}")
        specs = [spec for table, table_seeds in tables.items()
                 for spec in table_runs(table, _seeds(table_seeds, f"tables.{table}"), train, recipe, by_variant)]
        entries = document.get("run", [])
        if not isinstance(entries, list):
            raise BadInput("run must be an array of tables: [[run]]")
        for number, entry in enumerate(entries, 1):
            specs += _own_run(entry, seeds, train, f"[[run]] number {number}", recipe)
        if not specs:
            raise BadInput("the plan has no run: name tables, or add [[run]] entries")
        synthetic = document.get("synthetic")
        if synthetic is not None:
            _keys(synthetic, set(SYNTHETIC_FIELDS), "[synthetic]")
            if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in synthetic.values()):
                raise BadInput(f"[synthetic]: images and seed must be positive integers, got {synthetic}")
            synthetic = {"images": 3000, "seed": 1, **synthetic}
        return Plan(str(name), _merged(specs),
                    _path(document["runs"], "runs") if "runs" in document else defaults.RUNS_DIR / str(name),
                    _path(document.get("data", str(DATA_DIR)), "data"),
                    _path(document.get("models", str(defaults.MODELS_DIR)), "models"), synthetic, snapshots, str(path))


def check_plan_spec(spec: str) -> None:
    """BadInput or MissingFile (about "plan") unless `spec` is a built-in plan's name or a plan file that exists."""
    if spec not in BUILT_IN and not Path(spec).is_file():
        kind, why = (BadInput, " is a folder, not a plan file") if Path(spec).is_dir() else (
            MissingFile, f": not a built-in plan ({', '.join(BUILT_IN)}) and no such file")
        raise kind(f"{spec}{why}", about="plan")


def load_plan(spec: str, *, seeds=None, runs_dir: Path | None = None, data_dir: Path | None = None,
              models_dir: Path | None = None) -> Plan:
    """A built-in plan by name, or a plan file; `seeds`, `runs_dir`, `data_dir` and `models_dir`, when given,
    replace the plan's own (seeds: of every run). check_plan_spec first."""
    check_plan_spec(spec)
    if spec in BUILT_IN:
        return built_in(spec, seeds=seeds, runs_dir=runs_dir, data_dir=data_dir,
                        models_dir=models_dir or defaults.MODELS_DIR)
    plan = read_plan(Path(spec))
    runs = plan.runs
    named = [s.given_name for s in runs if s.given_name]
    if seeds and named:
        raise BadInput(f"{spec}: run {named[0]} is named, so it has the one seed the plan gives it; seeds given for "
                       f"every run cannot apply to it (give the seeds in the plan instead)")
    if seeds:
        runs = _merged([RunSpec(s.variant, s.profile, seed, s.train, s.tables, None, s.recipe) for s in runs
                        for seed in seeds])
    return Plan(plan.name, runs, runs_dir or plan.runs_dir, data_dir or plan.data_dir, models_dir or plan.models_dir,
                plan.synthetic, plan.snapshots, plan.source)
