"""Translation quality per training recipe, at the same CPU budget, on synthetic worlds with truth.

For every world and seed: write the world (64 px, unpaired train split, paired test split), then
train every recipe *interleaved* in one single-threaded process: round-robin chunks of about
``--chunk`` CPU seconds each, until every recipe has used ``--budget`` seconds of this process's
CPU time. Machine load therefore hits all recipes alike, and each gets the same compute. Then
translate the test set and score it against the true translation (PSNR/SSIM,
``cyclekit.metrics.paired``), next to two baselines that train nothing: do-nothing (output =
input) and average target (the mean training image of the target domain for every input).

The default suite is one world per kind of change: ``dusk`` (lighting / colour: every pixel
changes), ``ink`` (texture / style: every pixel changes) and ``morph`` (geometry: discs become
crosses), at 64 px with 400 + 400 training images, like the issue's held-out worlds.

Recipes: ``official`` (benchmarks/official.py: the official step, ResNet-6, ngf 32, ndf 64, paper
hyperparameters, fp32 eager), ``quickstart`` (the old U-Net quickstart: 6 levels, ngf/ndf 32, lr
6e-4), and any preset (``fast``, the recommended recipe), optionally with overrides:
``fast+ngf=24+masked=false``. Non-official recipes run ``cyclekit.train.step.train_step`` on
batches of their ``batch_size``; their learning rate follows the schedule ``cyclekit train
--lr-step-unit time`` builds from the recipe (``fast``: constant for the first half of the budget,
then linear decay to zero), here over the CPU time used rather than the wall time.

    .venv/bin/python benchmarks/bench_recipes.py --seeds 0,1,2 --budget 360 --jobs 2 --write-md \
        --notes benchmarks/recipes_notes.md

``--notes`` appends the prose kept in ``benchmarks/recipes_notes.md`` (the worlds, the recipes, why
``fast`` is the default, the one-seed explorations) below the generated tables; ``--aggregate``
rebuilds the section from an earlier ``--out`` without training.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))
MARK_BEGIN, MARK_END = "<!-- bench_recipes:begin -->", "<!-- bench_recipes:end -->"


# ----------------------------------------------------------------------------- recipes
def recipe_config(name: str, size: int):
    """The Config of a non-official recipe: ``quickstart`` or ``PRESET[+field=value,...]``."""
    from cyclekit.commands._config_args import load_preset
    from cyclekit.config import Config, set_field

    base, *over = name.split("+")
    if base == "quickstart":
        cfg = Config()
        m, t = cfg.model, cfg.train
        m.generator, m.unet_levels, m.ngf, m.ndf = "unet", 6, 32, 32
        t.lr = 6e-4
    else:
        cfg = load_preset(base)
    d = cfg.data
    d.load_size = round(d.load_size * size / d.crop_size)  # the preset's resize ratio, at this size
    cfg.model.image_size = d.crop_size = size
    for item in filter(None, over):
        key, _, value = item.partition("=")
        set_field(cfg, key, value)
    return cfg.validate()


RESIZING = ("resize_and_crop", "scale_width", "scale_width_and_crop")  # squares: resized to load_size


class OfficialRecipe:
    """The official ``optimize_parameters`` (constant lr: 800+ steps stay in the paper's first 100 epochs)."""

    def __init__(self, size: int, seed: int) -> None:
        from benchmarks.official import OfficialCycleGAN
        from cyclekit.config import ModelConfig, TrainConfig

        m = ModelConfig(generator="resnet", n_blocks=6, ngf=32, ndf=64, image_size=size)
        self.model = OfficialCycleGAN(m, TrainConfig(), seed=seed)
        self.load, self.batch, self.flip = size + size // 8, 1, True  # the paper's 286 -> 256 crop, flips

    precision = "fp32"

    def step(self, a, b, frac: float) -> None:
        self.model.step(a, b)

    def generator(self, direction: str):
        return self.model.G_AB if direction == "AtoB" else self.model.G_BA


class StepRecipe:
    """cyclekit's ``train_step`` on a Config, plus the recipe options (lr_d, ema_decay)."""

    def __init__(self, cfg, seed: int) -> None:
        import torch

        from cyclekit.losses import GANLoss
        from cyclekit.nn import init_weights
        from cyclekit.nn.cyclegan import CycleGANNets
        from cyclekit.runtime import generator_macs, precision_dtype
        from cyclekit.train.ema import GeneratorEMA
        from cyclekit.train.nce import attach_nce
        from cyclekit.train.optim import make_optimizers
        from cyclekit.train.pool import ImagePool
        from cyclekit.train.schedule import TIME_STEPS, LRFactor, half_res_share
        from cyclekit.train.step import StepState

        torch.manual_seed(seed)
        self.cfg, t = cfg, cfg.train
        self.batch, self.flip = t.batch_size, cfg.data.flip
        # training images are resized to load_size before the random crop, or kept at their size
        self.load = cfg.data.load_size if cfg.data.preprocess in RESIZING else None
        nets = CycleGANNets(cfg.model)
        for net in nets.children():
            init_weights(net, cfg.model.init, cfg.model.init_gain)
        opt_G, opt_D = make_optimizers(nets, t, torch.device("cpu"))  # the trainer's (fused) Adams
        nce = attach_nce(cfg, opt_G, torch.device("cpu"))
        # the precision `cyclekit train` picks for this recipe on this CPU (auto: bf16 where the CPU
        # has it natively and the batch's generator pass is big enough to gain from it)
        cpu = torch.device("cpu")
        macs = generator_macs(cfg.model, t.batch_size, cfg.data.crop_size) if t.precision == "auto" else None
        dtype = precision_dtype(t.precision, cpu, macs)
        self.precision = "bf16" if dtype == torch.bfloat16 else "fp32"
        self.half_share = half_res_share(cfg, fp32=dtype is None)  # as the trainer resolves it
        self.state = StepState(nets, opt_G, opt_D, ImagePool(t.pool_size, seed), ImagePool(t.pool_size, seed + 1),
                               GANLoss(t.gan_loss), nce=nce, autocast_dtype=dtype)
        self.base_lr = [t.lr, t.lr_d or t.lr]
        self.ema = GeneratorEMA(nets, t.ema_decay) if t.ema_decay > 0 else None
        # the recipe's own time-budget schedule, as `cyclekit train --lr-step-unit time` builds it
        n_const = round(TIME_STEPS * t.n_epochs / max(1, t.n_epochs + t.n_epochs_decay))
        self.factor = LRFactor(t.lr_policy, n_const, TIME_STEPS - n_const, t.lr_decay_every, t.lr_gamma)

    def step(self, a, b, frac: float) -> None:
        import torch.nn.functional as F

        from cyclekit.train.schedule import half_res_at, time_position
        from cyclekit.train.step import train_step

        k = self.factor(time_position(frac))
        if half_res_at(time_position(frac), self.half_share):  # as the trainer does
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        for opt, lr in zip((self.state.opt_G, self.state.opt_D), self.base_lr):
            for group in opt.param_groups:
                group["lr"] = lr * k
        train_step(self.state, a, b, self.cfg.train)
        if self.ema is not None:
            self.ema.update(self.state.nets)

    def generator(self, direction: str):
        name = "G_AB" if direction == "AtoB" else "G_BA"
        return self.ema.module(name) if self.ema is not None else getattr(self.state.nets, name)


def make_recipe(name: str, size: int, seed: int):
    return OfficialRecipe(size, seed) if name == "official" else StepRecipe(recipe_config(name, size), seed)


# ----------------------------------------------------------------------------- one job
def _load_dir(path: Path, size: int | None = None) -> np.ndarray:
    from PIL import Image

    out = []
    for p in sorted(path.glob("*.png")):
        with Image.open(p) as im:
            im = im.convert("RGB")
            if size is not None:
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            out.append(np.asarray(im, np.float32) / 127.5 - 1.0)
    return np.stack(out).transpose(0, 3, 1, 2)  # (N, 3, H, W) in [-1, 1]


class Batches:
    """Unpaired training batches: random A, random B, a random crop of images already resized to
    the recipe's load size (the paper's 9/8; none for ``--preprocess none`` or ``crop``) + a random
    flip (unless the recipe's ``data.flip`` is off)."""

    def __init__(self, train_a, train_b, size: int, seed: int, batch: int = 1, flip: bool = True) -> None:
        self.a, self.b, self.size, self.batch, self.flip = train_a, train_b, size, batch, flip
        self.rng = np.random.default_rng(seed)

    def _one(self, pool):
        import torch

        out = []
        for _ in range(self.batch):
            x = pool[self.rng.integers(len(pool))]
            i, j = self.rng.integers(0, x.shape[1] - self.size + 1, 2)
            x = x[:, i:i + self.size, j:j + self.size]
            mirror = self.rng.random() < 0.5  # drawn either way: the same crops with and without flips
            out.append(x[:, :, ::-1] if mirror and self.flip else x)
        return torch.from_numpy(np.ascontiguousarray(np.stack(out)))

    def next(self):
        return self._one(self.a), self._one(self.b)


def translate(gen, images: np.ndarray) -> np.ndarray:
    import torch

    gen.eval()
    with torch.no_grad():
        out = torch.cat([gen(torch.from_numpy(images[i:i + 8])) for i in range(0, len(images), 8)])
    gen.train()
    return out.clamp(-1, 1).numpy()


BASELINES = ("do-nothing", "average target")  # rows that train nothing


def score(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from cyclekit.metrics.paired import psnr, ssim

    to01 = lambda x: (x.transpose(1, 2, 0) + 1.0) / 2.0  # noqa: E731
    ps = [psnr(to01(p), to01(t)) for p, t in zip(pred, truth)]
    ss = [ssim(to01(p), to01(t)) for p, t in zip(pred, truth)]
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss))}


def run_job(world: str, seed: int, recipes: list[str], args) -> dict:
    import torch

    from cyclekit.data.synthetic import make_world

    torch.set_num_threads(1)
    root = make_world(world, Path(args.out) / "data" / f"{world}_s{seed}", size=args.size,
                      n_train=args.n_train, n_test=args.n_test, seed=seed)
    train = {}  # (A, B) training images at each recipe's load size (None: as rendered)

    def train_at(load):
        if load not in train:
            train[load] = _load_dir(root / "trainA", load), _load_dir(root / "trainB", load)
        return train[load]

    test = {d: (_load_dir(root / f"test{d[0]}"), _load_dir(root / f"test{d[0]}_gt")) for d in ("AtoB", "BtoA")}
    import torch as _torch

    from benchmarks.common import machine

    # Two baselines that need no training: the input itself, and the average training picture of
    # the target domain given for every input (a recipe below it has learnt nothing per image).
    mean = {"AtoB": _load_dir(root / "trainB").mean(0), "BtoA": _load_dir(root / "trainA").mean(0)}
    average = {d: np.broadcast_to(mean[d], y.shape).copy() for d, (_, y) in test.items()}
    res = {"world": world, "seed": seed, "budget_s": args.budget, "machine": machine(_torch.device("cpu")),
           "recipes": {"do-nothing": {d: score(x, y) for d, (x, y) in test.items()},
                       "average target": {d: score(average[d], y) for d, (_, y) in test.items()}}}
    live = {n: make_recipe(n, args.size, seed) for n in recipes}
    data = {n: Batches(*train_at(live[n].load), args.size, seed, live[n].batch, live[n].flip) for n in recipes}
    used = {n: 0.0 for n in recipes}
    wall = {n: 0.0 for n in recipes}
    steps = {n: 0 for n in recipes}
    while any(used[n] < args.budget for n in recipes):
        for n in recipes:  # round robin: a chunk of CPU time each
            c0, w0 = time.process_time(), time.perf_counter()
            while used[n] < args.budget and time.process_time() - c0 < args.chunk:
                a, b = data[n].next()
                live[n].step(a, b, min(1.0, (used[n] + time.process_time() - c0) / args.budget))
                steps[n] += 1
            used[n] += time.process_time() - c0
            wall[n] += time.perf_counter() - w0
    # An independent judge of "did it change domain" (as the gender classifier on real faces):
    # a domain CNN trained on the training folders; success = translated images it puts in the
    # target domain. Not counted in any budget.
    from cyclekit.metrics.classifier import train_domain_classifier

    clf = train_domain_classifier(root / "trainA", root / "trainB", channels=3, size=args.size, seed=seed)
    res["classifier_heldout_accuracy"] = clf.info.heldout_accuracy

    def success(pred, d):
        p = clf.prob_B(torch.from_numpy(np.ascontiguousarray(pred)))
        return float((p >= 0.5).mean() if d == "AtoB" else (p < 0.5).mean())

    for d, (x, _) in test.items():
        res["recipes"]["do-nothing"][d]["success"] = success(x, d)
        res["recipes"]["average target"][d]["success"] = success(average[d], d)
    preds = {}
    for n in recipes:
        row = {"steps": steps[n], "cpu_s": round(used[n], 1), "wall_s": round(wall[n], 1),
               "precision": live[n].precision}
        for d, (x, y) in test.items():
            pred = translate(live[n].generator(d), x)
            row[d] = {**score(pred, y), "success": success(pred, d)}
            if d == "AtoB":
                preds[n] = pred
        res["recipes"][n] = row
    if world in args.grid and seed == min(args.seed_list):
        save_grid(test["AtoB"][0], preds, test["AtoB"][1], Path(args.out) / f"grid_{world}.png")
    return res


def save_grid(inputs, preds: dict, truth, path: Path, rows: int = 6) -> None:
    """Rows of test images; columns: input | one per recipe | truth."""
    from PIL import Image

    cols = [inputs[:rows]] + [p[:rows] for p in preds.values()] + [truth[:rows]]
    tiles = np.concatenate([np.concatenate(list(c), axis=1) for c in cols], axis=2)  # (3, rows*H, cols*W)
    img = ((tiles.transpose(1, 2, 0) + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    (path.with_suffix(".txt")).write_text("columns: input | " + " | ".join(preds) + " | truth\n")


# ----------------------------------------------------------------------------- driver
def aggregate(results: list[dict], direction: str = "AtoB") -> dict:
    """{world: {recipe: {psnr: [..], ssim: [..], steps: [..], cpu_s: [..], wall_s: [..]}}}."""
    table: dict = {}
    for r in results:
        for n, row in r["recipes"].items():
            cell = table.setdefault(r["world"], {}).setdefault(n, {})
            for k in ("psnr", "ssim", "success"):
                cell.setdefault(k, []).append(row[direction].get(k, float("nan")))
            for k in ("steps", "cpu_s", "wall_s"):
                if k in row:
                    cell.setdefault(k, []).append(row[k])
    return table


def markdown(results: list[dict], command: str) -> str:
    worlds = list(dict.fromkeys(r["world"] for r in results))
    recipes = list(dict.fromkeys(n for r in results for n in r["recipes"]))
    seeds = sorted({r["seed"] for r in results})
    budget = results[0]["budget_s"]
    mach = results[0].get("machine", {})
    precisions = {n: row.get("precision", "fp32") for r in results for n, row in r["recipes"].items()
                  if n not in BASELINES}
    lines = [f"Command: `{command}`", "",
             f"Machine: {mach.get('cpu', '?')} ({mach.get('cores', '?')} cores; native bf16: "
             f"{mach.get('cpu_bf16', '?')}), torch {mach.get('torch', '?')}, one thread per job; each recipe "
             "trains in the precision `cyclekit train` would use for it here (its own, or what `auto` picks): "
             + ", ".join(f"{n} {p}" for n, p in precisions.items()) + ".", "",
             f"{len(seeds)} seeds ({', '.join(map(str, seeds))}; the seed picks the world's images and the "
             f"initial weights), {budget:g} s of single-thread CPU time per recipe per run, recipes interleaved "
             "in one process. Cells: PSNR dB mean ± standard deviation over seeds / SSIM mean / translation "
             "success (share of translated test images that a domain CNN trained on the training folders "
             "puts in the target domain; the do-nothing row shows its error rate). average target = the "
             "mean of the target domain's training images, the same picture for every input. steps = training "
             "iterations done in the budget (mean over worlds and seeds).", ""]
    acc = {w: [r["classifier_heldout_accuracy"] for r in results if r["world"] == w
               and "classifier_heldout_accuracy" in r] for w in worlds}
    lines += ["Domain CNN held-out accuracy (success is meaningless where it is near 50%): "
              + ", ".join(f"{w} {100 * np.mean(a):.0f}%" for w, a in acc.items() if a), ""]
    for direction in ("AtoB", "BtoA"):
        table = aggregate(results, direction)
        lines += [f"**{direction}**: PSNR / SSIM against the true translation / success", "",
                  "| recipe | steps | " + " | ".join(worlds) + " |",
                  "|---|---:|" + "---:|" * len(worlds)]
        for n in recipes:
            cells, steps = [], ""
            for w in worlds:
                c = table[w].get(n)
                if c is None:
                    cells.append("—")
                    continue
                p, s, k = np.array(c["psnr"]), np.array(c["ssim"]), np.array(c["success"])
                cells.append(f"{p.mean():.2f} ± {p.std():.2f} / {s.mean():.3f} / {100 * k.mean():.0f}%")
            st = [v for w in worlds for v in table[w].get(n, {}).get("steps", [])]
            steps = f"{np.mean(st):.0f}" if st else "—"
            lines.append(f"| {n} | {steps} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def replace_section(md_path: Path, title: str, body: str) -> None:
    """Write ``body`` under ``title`` between our markers in ``md_path``; nothing else changes."""
    text = md_path.read_text(encoding="utf-8") if md_path.is_file() else ""
    block = f"{MARK_BEGIN}\n## {title}\n\n{body.rstrip()}\n{MARK_END}"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    md_path.write_text(text, encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worlds", default="dusk,ink,morph")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--recipes", default="official,fast")
    ap.add_argument("--budget", type=float, default=360.0, help="CPU seconds per recipe per run")
    ap.add_argument("--chunk", type=float, default=2.0, help="CPU seconds per round-robin turn")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n-train", type=int, default=400)
    ap.add_argument("--n-test", type=int, default=40)
    ap.add_argument("--jobs", type=int, default=2, help="parallel single-thread processes")
    ap.add_argument("--grid", default="dusk,ink,morph", help="worlds whose first seed saves grid_<world>.png")
    ap.add_argument("--out", default="runs/bench_recipes")
    ap.add_argument("--job", default="", help=argparse.SUPPRESS)  # internal: WORLD:SEED
    ap.add_argument("--write-md", action="store_true", help="replace our section of BENCHMARKS.md")
    ap.add_argument("--aggregate", action="store_true", help="run nothing: tabulate OUT/jobs/*.json")
    ap.add_argument("--notes", default="", help="markdown file appended to the section (--write-md)")
    args = ap.parse_args(argv)
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    args.grid = args.grid.split(",")
    recipes = args.recipes.split(",")
    out = Path(args.out)
    if args.job:
        world, seed = args.job.split(":")
        res = run_job(world, int(seed), recipes, args)
        (out / "jobs").mkdir(parents=True, exist_ok=True)
        (out / "jobs" / f"{world}_s{seed}.json").write_text(json.dumps(res, indent=1))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    todo = [(w, s) for s in args.seed_list for w in args.worlds.split(",")]
    base, skip = [], False
    for a in (argv if argv is not None else sys.argv[1:]):  # the arguments a job needs
        if skip or a in ("--write-md", "--aggregate") or a.startswith("--notes"):
            skip = a == "--notes"
            continue
        base.append(a)
    running: list = []
    t0 = time.time()
    if args.aggregate:  # only tabulate the job files already in OUT/jobs
        todo = []
    while todo or running:
        while todo and len(running) < args.jobs:
            w, s = todo.pop(0)
            cmd = [sys.executable, __file__, *base, "--job", f"{w}:{s}"]
            running.append((w, s, subprocess.Popen(cmd, env=env)))
        time.sleep(1.0)
        for item in [r for r in running if r[2].poll() is not None]:
            running.remove(item)
            print(f"[{time.time() - t0:6.0f}s] {item[0]} seed {item[1]}: rc {item[2].returncode}", flush=True)
    results = []
    for s in args.seed_list:
        for w in args.worlds.split(","):
            p = out / "jobs" / f"{w}_s{s}.json"
            if p.is_file():
                results.append(json.loads(p.read_text()))
    command = "python benchmarks/bench_recipes.py " + " ".join(base)
    md = markdown(results, command)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "table.md").write_text(md + "\n")
    print(md)
    if args.write_md:
        body = md + ("\n" + Path(args.notes).read_text() if args.notes else "")
        replace_section(ROOT / "BENCHMARKS.md", "Translation quality per recipe (same CPU budget)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
