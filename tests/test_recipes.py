"""Training recipes: the EMA of generator weights, the recipe config fields, the fast preset (the
quickstart's recipe), the "appear" world, and the recipe benchmark's pieces (small and CPU-cheap)."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cyclekit.config import Config, load_config
from cyclekit.data import synthetic as syn
from cyclekit.errors import ConfigError
from cyclekit.nn.cyclegan import CycleGANNets
from cyclekit.train.ema import GeneratorEMA

ROOT = Path(__file__).resolve().parent.parent
PRESET = ROOT / "src" / "cyclekit" / "presets" / "fast.json"


def _plain_model():
    """The `fast` preset's networks without its colour gain and spectral norm (each test adds one)."""
    cfg = load_config(PRESET).model
    cfg.colour_gain, cfg.colour_gain_mode, cfg.colour_gain_luma, cfg.d_spectral_norm = 0.0, "rgb", 0.0, False
    return cfg


def _nets(size: int = 32) -> CycleGANNets:
    torch.manual_seed(0)
    cfg = load_config(PRESET).model
    cfg.image_size = size
    return CycleGANNets(cfg)


def test_ema_follows_the_formula_with_warmup():
    nets = _nets()
    ema = GeneratorEMA(nets, 0.9)
    w0 = [p.detach().clone() for p in nets.G_AB.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(w0, ema.module("G_AB").parameters()))
    expected = [w.clone() for w in w0]
    for n in range(30):
        with torch.no_grad():
            for p in nets.G_AB.parameters():
                p.add_(0.01 * torch.randn_like(p))
        d = min(0.9, (1 + n) / (10 + n))
        assert ema.current_decay() == pytest.approx(d)
        ema.update(nets)
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, nets.G_AB.parameters())]
    for e, a in zip(expected, ema.module("G_AB").parameters()):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)
    # the shadow is not trained and does not share storage with the live generator
    assert not any(p.requires_grad for p in ema.module("G_BA").parameters())
    live = dict(nets.G_AB.named_parameters())
    assert all(p.data_ptr() != live[k].data_ptr() for k, p in ema.module("G_AB").named_parameters())


def test_ema_state_dict_resumes_exactly():
    nets = _nets()
    ema = GeneratorEMA(nets, 0.99)
    for _ in range(5):
        with torch.no_grad():
            for p in nets.parameters():
                p.add_(0.01)
        ema.update(nets)
    state = copy.deepcopy(ema.state_dict())
    other = GeneratorEMA(_nets(), 0.5)
    other.load_state_dict(state)
    assert other.decay == 0.99 and other.updates == 5
    for name in ("G_AB", "G_BA"):
        for a, b in zip(ema.module(name).state_dict().values(), other.module(name).state_dict().values()):
            assert torch.equal(a, b)
    ema.update(nets)
    other.update(nets)
    for a, b in zip(ema.module("G_AB").parameters(), other.module("G_AB").parameters()):
        assert torch.equal(a, b)


def test_ema_rejects_bad_decay():
    with pytest.raises(ValueError):
        GeneratorEMA(_nets(), 1.0)


def test_recipe_config_fields_default_off_and_validate():
    cfg = Config()
    assert cfg.train.ema_decay == 0.0 and cfg.train.lr_d == 0.0  # defaults reproduce the paper
    cfg.train.ema_decay = 1.0
    with pytest.raises(ConfigError, match="ema-decay"):
        cfg.validate()
    cfg.train.ema_decay, cfg.train.lr_d = 0.0, -1.0
    with pytest.raises(ConfigError, match="lr-d"):
        cfg.validate()
    cfg.train.lr_d, cfg.train.ema_decay = 3e-4, 0.999
    back = Config.from_dict(json.loads(cfg.validate().to_json()))
    assert (back.train.lr_d, back.train.ema_decay) == (3e-4, 0.999)


def test_fast_preset_builds_and_translates_64px():
    cfg = load_config(PRESET).validate()
    m = cfg.model
    assert (m.generator, m.residual, m.upsample) == ("resnet", False, "resize_conv")
    assert (cfg.train.lambda_identity, cfg.train.lr_step_unit) == (0.0, "time")
    assert cfg.train.ema_decay == 0.999  # translations use the averaged generators
    nets = _nets(64)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = nets.G_AB(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert nets.D_B(y).shape[0] == 2


def test_appear_world_adds_dark_objects_on_the_head():
    for seed in range(3):
        a, b = syn.render_pair("appear", seed, 64)
        mask = syn.object_mask("appear", seed, 64)
        # the hat and glasses are dark: B is darker than A where they were drawn
        assert b[mask].mean() < a[mask].mean() - 30
        assert 0.03 < mask.mean() < 0.4


def test_bench_recipes_section_replacement_and_one_tiny_job(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench_recipes as br

    md = tmp_path / "B.md"
    md.write_text("# Title\n\nkeep me\n")
    br.replace_section(md, "Recipes", "one")
    br.replace_section(md, "Recipes", "two")
    text = md.read_text()
    assert text.startswith("# Title\n\nkeep me\n") and "two" in text and "one" not in text
    assert text.count(br.MARK_BEGIN) == 1
    out = tmp_path / "run"
    assert br.main(["--worlds", "appear", "--seeds", "0", "--recipes", "official,fast", "--budget", "0.3",
                    "--chunk", "0.1", "--size", "32", "--n-train", "4", "--n-test", "2", "--out", str(out),
                    "--job", "appear:0"]) == 0
    res = json.loads((out / "jobs" / "appear_s0.json").read_text())
    assert set(res["recipes"]) == {"do-nothing", "average target", "official", "fast"}
    # the average target is one picture for every input, scored like a translation
    assert "steps" not in res["recipes"]["average target"]
    assert np.isfinite(res["recipes"]["average target"]["BtoA"]["psnr"])
    for n in ("official", "fast"):
        row = res["recipes"][n]
        assert row["steps"] >= 1 and row["cpu_s"] >= 0.3 and np.isfinite(row["AtoB"]["psnr"])


def test_bench_recipes_trains_each_recipe_with_its_own_batch_and_schedule():
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench_recipes as br

    images = np.random.default_rng(0).uniform(-1, 1, (5, 3, 36, 36)).astype(np.float32)
    a, b = br.Batches(images, images, 32, seed=0, batch=3).next()
    assert a.shape == b.shape == (3, 3, 32, 32)
    one, _ = br.Batches(images, images, 32, seed=0).next()
    assert one.shape == (1, 3, 32, 32) and torch.equal(one[0], a[0])  # batch 1 draws as it always did
    fast = br.StepRecipe(br.recipe_config("fast+batch_size=3", 32), seed=0)
    assert fast.batch == 3
    assert [fast.factor(pos) for pos in (0, 499)] == [1.0, 1.0]  # fast: constant for half the budget
    assert fast.factor(999) < 0.01 and 0.45 < fast.factor(750) < 0.55  # then linear to zero
    longer = br.StepRecipe(br.recipe_config("fast+n_epochs=3", 32), seed=0)  # 3:1 split
    assert longer.factor(700) == 1.0 and longer.factor(999) < 0.01
    fast.step(a, b, 0.9)
    assert fast.state.opt_G.param_groups[0]["lr"] == pytest.approx(1e-3 * fast.factor(900))
    # the recipe's data.flip decides whether its batches are mirrored (the official step: always)
    assert not fast.flip and br.StepRecipe(br.recipe_config("fast+flip=true", 32), seed=0).flip
    same = images[:1, :, :32, :32]
    kept = [br.Batches(same, same, 32, seed=s, flip=False).next()[0] for s in range(8)]
    mirrored = [br.Batches(same, same, 32, seed=s).next()[0] for s in range(8)]
    assert all(np.array_equal(k[0].numpy(), same[0]) for k in kept)
    assert any(np.array_equal(m[0].numpy(), same[0, :, :, ::-1]) for m in mirrored)
    # and its preprocess whether the training images are resized (9/8, as the paper's 286 -> 256)
    assert fast.load == 36 and br.OfficialRecipe(32, seed=0).load == 36
    assert br.StepRecipe(br.recipe_config("fast+preprocess=none+batch_size=1", 32), seed=0).load is None


def test_bench_recipes_trains_in_the_precision_cyclekit_train_would_pick(monkeypatch):
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench_recipes as br

    monkeypatch.setenv("CYCLEKIT_CPU_BF16", "1")  # as on a CPU with native bf16
    big = br.StepRecipe(br.recipe_config("fast+batch_size=8+precision=auto", 64), seed=0)
    one = br.StepRecipe(br.recipe_config("fast+batch_size=1+precision=auto", 64), seed=0)  # below the break-even
    preset = br.StepRecipe(br.recipe_config("fast+batch_size=8", 64), seed=0)  # the preset's own fp32
    assert (big.precision, one.precision, preset.precision) == ("bf16", "fp32", "fp32")
    assert big.state.autocast_dtype == torch.bfloat16 and one.state.autocast_dtype is None
    assert (big.half_share, preset.half_share) == (0.0, 0.25)  # the warm-up: fp32 only
    monkeypatch.setenv("CYCLEKIT_CPU_BF16", "0")  # AVX2 only: never bf16
    assert br.StepRecipe(br.recipe_config("fast+batch_size=8+precision=auto", 64), seed=0).precision == "fp32"
    assert br.OfficialRecipe.precision == "fp32"  # the stand-in is fp32 by definition


def test_quickstart_trains_the_recommended_recipe_over_its_time_budget(tmp_path):
    from cyclekit.commands.synthetic_quickstart import QuickstartOptions, quickstart_config

    cfg = quickstart_config(QuickstartOptions(max_minutes=3.0, size=64), tmp_path / "data", tmp_path / "run")
    fast = load_config(PRESET)
    assert cfg.model == fast.model  # the preset's networks, unchanged (it is a 64 px recipe)
    t = cfg.train
    assert (t.lr, t.batch_size, t.lambda_identity, t.lr_step_unit, t.max_minutes, t.max_steps) == (
        fast.train.lr, fast.train.batch_size, fast.train.lambda_identity, "time", 3.0, 0)
    # fp32 on every CPU, bf16 or not (BENCHMARKS.md: more learnt per CPU second), so with the
    # half-size warm-up on wherever a time budget allows it
    from cyclekit.train.schedule import AUTO_HALF_RES, half_res_share

    assert t.precision == "fp32" and half_res_share(cfg, fp32=True) == AUTO_HALF_RES
    # ... but not on a GPU, where it would keep the step from running as a CUDA graph
    assert half_res_share(cfg, fp32=True, cuda=True) == 0.0
    cfg.train.cuda_graphs = "false"
    assert half_res_share(cfg, fp32=True, cuda=True) == AUTO_HALF_RES


def test_multiscale_discriminator_weighs_every_scale_alike_and_trains_them_all():
    from cyclekit.losses import GANLoss, gradient_penalty

    cfg = load_config(PRESET)
    cfg.model.d_scales = 2
    cfg.validate()
    torch.manual_seed(0)
    nets = CycleGANNets(cfg.model)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():  # eval: spectral norm's power iteration holds still between the two calls
        coarse_alone = nets.D_B.eval().scales[1](torch.nn.functional.avg_pool2d(x, 2))
        torch.testing.assert_close(nets.D_B(x)[1], coarse_alone)
    fine, coarse = nets.D_B.train()(x)
    assert fine.shape == (2, 1, 6, 6) and coarse.shape == (2, 1, 2, 2)  # 64 px and 32 px judged
    gan = GANLoss("lsgan")
    expected = (((fine - 1) ** 2).mean() + ((coarse - 1) ** 2).mean()) / 2
    loss = gan((fine, coarse), True)
    torch.testing.assert_close(loss, expected)  # not dominated by the 36 fine scores against 4
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in nets.D_B.scales[1].parameters())
    assert gradient_penalty(nets.D_B, x, torch.zeros_like(x)) > 0  # the WGAN-GP path reads tuples too
    cfg.model.d_scales = 3  # 16 px is too small for a 3-layer PatchGAN
    with pytest.raises(ConfigError, match="d-scales"):
        cfg.validate()


def test_cycle_noise_reaches_the_cycle_path_only():
    from cyclekit.losses import GANLoss
    from cyclekit.train.optim import make_optimizers
    from cyclekit.train.pool import ImagePool
    from cyclekit.train.step import StepState, _noisy, train_step

    x = torch.zeros(4, 3, 64, 64)
    assert _noisy(x, 0.0) is x  # off: the paper's step, bit for bit
    torch.manual_seed(1)
    assert _noisy(x, 0.3).std().item() == pytest.approx(0.3, rel=0.05)

    def cycle_loss(noise: float) -> tuple[float, float]:
        cfg = load_config(PRESET)
        cfg.train.cycle_noise = noise
        cfg.validate()
        torch.manual_seed(0)
        nets = CycleGANNets(cfg.model)
        opt_G, opt_D = make_optimizers(nets, cfg.train, torch.device("cpu"))
        state = StepState(nets, opt_G, opt_D, ImagePool(0, 0), ImagePool(0, 1), GANLoss("lsgan"))
        a, b = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
        out = train_step(state, a, b, cfg.train)
        return float(out["cycle_A"]), float(out["G_AB_adv"])

    clean, noisy = cycle_loss(0.0), cycle_loss(0.5)
    assert noisy[0] != pytest.approx(clean[0], rel=1e-4)  # the way back saw a noisy translation
    assert noisy[1] == pytest.approx(clean[1], rel=1e-6)  # the discriminator saw the clean one


def test_colour_gain_passes_each_channel_through_a_non_negative_gain():
    """--colour-gain g: out = tanh(head + g_c * input_c), g_c = softplus(.) starting at g. The path
    sees absolute colour (instance norm hides it from the rest) but cannot invert or mix channels:
    raising one input channel uniformly never lowers that channel of the output through it."""
    cfg = _plain_model()
    cfg.colour_gain = 0.5
    torch.manual_seed(0)
    g = CycleGANNets(cfg).G_AB.eval()
    torch.testing.assert_close(torch.nn.functional.softplus(g.colour_gain).flatten(), torch.full((3,), 0.5))
    x = torch.rand(1, 3, 64, 64) * 0.5 - 0.5
    tint = torch.tensor([0.3, 0.0, 0.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        g.colour_gain.fill_(-30.0)  # gain ~0: the colour-blind paper generator
        blind = g(x), g(x + tint)
        g.colour_gain.fill_(3.0)
        seen = g(x), g(x + tint)
    torch.testing.assert_close(blind[0], blind[1], atol=1e-5, rtol=0)
    change = seen[1] - seen[0]
    assert change[:, 0].min() > 0 and change[:, 0].mean() > 0.05  # red rises where red was raised
    torch.testing.assert_close(change[:, 1:], torch.zeros_like(change[:, 1:]), atol=1e-5, rtol=0)
    cfg.generator = "unet"
    with pytest.raises(ConfigError, match="colour-gain"):
        Config(model=cfg).validate()


def test_chroma_colour_gain_passes_hue_but_not_brightness():
    """--colour-gain-mode chroma: the gain sees x_c - mean_c(x). The generator stays blind to a
    uniform change of brightness (light paper may turn into black paper) but still sees a tint:
    raising red raises red through the path and lowers green and blue by half as much."""
    cfg = _plain_model()
    cfg.colour_gain, cfg.colour_gain_mode = 1.0, "chroma"
    torch.manual_seed(0)
    g = CycleGANNets(cfg).G_AB.eval()
    x = torch.rand(1, 3, 64, 64) * 0.5 - 0.5
    with torch.no_grad():
        g.colour_gain.fill_(3.0)
        base, brighter = g(x), g(x + 0.3)
        tinted = g(x + torch.tensor([0.3, 0.0, 0.0]).view(1, 3, 1, 1))
    torch.testing.assert_close(base, brighter, atol=1e-5, rtol=0)
    pre = torch.atanh(tinted.clamp(-0.999999, 0.999999)) - torch.atanh(base.clamp(-0.999999, 0.999999))
    gain = float(torch.nn.functional.softplus(torch.tensor(3.0)))
    torch.testing.assert_close(pre.mean((0, 2, 3)), torch.tensor([0.2, -0.1, -0.1]) * gain, atol=2e-3, rtol=0)
    cfg.colour_gain_mode = "hsv"
    with pytest.raises(ConfigError, match="colour-gain-mode"):
        Config(model=cfg).validate()


def test_split_colour_gain_starts_as_rgb_and_may_invert_brightness_only():
    """--colour-gain-mode split: g_c * (x_c - mean_c x) + h_c * mean_c x, with g_c >= 0 and h_c of
    either sign. h starts at --colour-gain-luma: equal to g it starts as the rgb gain, at 0 it starts
    as the chroma gain; a negative h turns a brighter input into a darker output (light paper into
    black paper) while a tint still passes with its own sign."""
    cfg = _plain_model()
    cfg.colour_gain = 0.5
    torch.manual_seed(0)
    rgb = CycleGANNets(cfg).G_AB.eval()
    cfg.colour_gain_mode = "chroma"
    torch.manual_seed(0)
    chroma = CycleGANNets(cfg).G_AB.eval()
    cfg.colour_gain_mode = "split"
    torch.manual_seed(0)
    assert torch.equal(CycleGANNets(cfg).G_AB.luma_gain, torch.zeros(1, 3, 1, 1))  # default start 0
    cfg.colour_gain_luma = 0.5
    torch.manual_seed(0)
    g = CycleGANNets(cfg).G_AB.eval()
    x = torch.rand(1, 3, 64, 64) * 0.5 - 0.5
    with torch.no_grad():
        torch.testing.assert_close(g(x), rgb(x), atol=1e-6, rtol=0)
        g.luma_gain.zero_()
        torch.testing.assert_close(g(x), chroma(x), atol=1e-6, rtol=0)
        g.luma_gain.fill_(-0.5)
        base, brighter = g(x), g(x + 0.3)
        tinted = g(x + torch.tensor([0.3, 0.0, 0.0]).view(1, 3, 1, 1))
    assert (brighter < base).all()  # every channel darker where the input got brighter
    change = tinted - base  # red: 0.5 * 0.2 (chroma) - 0.5 * 0.1 (brightness) > 0; green, blue: both < 0
    assert change[:, 0].min() > 0 and change[:, 1:].max() < 0


def test_input_skip_and_layer_norm_let_the_resnet_see_absolute_colour():
    """Instance norm after the first convolution removes a uniform colour shift of the input
    (reflection padding keeps it uniform), so the paper's ResNet gives the same output for a grey
    and a tinted copy of an image; with --input-skip the output layer sees the tint, and with
    --norm layer (one mean over all channels) the tint survives as a difference between channels."""
    cfg = _plain_model()
    x = torch.rand(1, 3, 64, 64) * 0.5 - 0.5
    tint = torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1)
    outs = {}
    for variant in ("instance", "skip", "layer"):
        cfg.input_skip = variant == "skip"
        cfg.norm = "layer" if variant == "layer" else "instance"
        torch.manual_seed(0)
        g = CycleGANNets(cfg).G_AB.eval()
        with torch.no_grad():
            outs[variant] = (g(x), g(x + tint))
    torch.testing.assert_close(outs["instance"][0], outs["instance"][1], atol=1e-5, rtol=0)
    for variant in ("skip", "layer"):
        assert (outs[variant][0] - outs[variant][1]).abs().mean() > 1e-3, variant
    cfg.norm, cfg.input_skip = "instance", True
    cfg.generator = "unet"
    with pytest.raises(ConfigError, match="input-skip"):
        Config(model=cfg).validate()


def test_diff_augment_moves_and_blanks_what_the_discriminator_sees_differentiably():
    """--diff-augment: translation shifts each image by at most 1/8 of its side (grey fill), cutout
    blanks one square of half the side; both pass gradients back to every pixel they keep, and
    neither changes a colour."""
    from cyclekit.train.augment import augmenter, cutout, translate

    torch.manual_seed(0)
    x = torch.zeros(8, 3, 64, 64)
    x[:, :, 32, 32] = 1.0  # one white dot per image
    moved = translate(x)
    for img in moved:
        ys, xs = torch.nonzero(img[0] == 1.0, as_tuple=True)
        assert len(ys) == 1 and abs(int(ys) - 32) <= 8 and abs(int(xs) - 32) <= 8
    assert len({tuple(torch.nonzero(img[0]).flatten().tolist()) for img in moved}) > 1  # own shift per image
    ones = torch.ones(16, 3, 64, 64, requires_grad=True)
    holed = cutout(ones)
    blank = (holed[:, 0] == 0).flatten(1).sum(1)
    assert blank.max() == 32 * 32 and blank.min() > 0  # a 32 px square, clipped where it hangs over the edge
    assert set(holed.unique().tolist()) == {0.0, 1.0}  # nothing recoloured
    holed.sum().backward()
    assert torch.equal(ones.grad, holed.detach())  # gradient 1 where kept, 0 in the hole
    assert augmenter("none")(x) is x  # off: the paper's step, bit for bit
    with pytest.raises(ConfigError, match="diff-augment"):
        cfg = Config()
        cfg.train.diff_augment = "colour"
        cfg.validate()


def test_d_spectral_norm_bounds_every_discriminator_convolution():
    """--d-spectral-norm: each convolution's weight, as used, has largest singular value ~1 once
    the power iteration has run, whatever the initialisation wrote into the stored weight."""
    from cyclekit.nn import init_weights

    cfg = _plain_model()
    cfg.d_spectral_norm = True
    torch.manual_seed(0)
    D = CycleGANNets(cfg).D_B
    init_weights(D, "normal", 0.5)  # a large init: reaches the stored weights, not the computed ones
    for _ in range(30):  # the power iteration advances once per forward pass in training mode
        D(torch.rand(1, 3, 64, 64))
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5
    for m in convs:
        stored = m.parametrizations.weight.original
        assert stored.std().item() == pytest.approx(0.5, rel=0.2)
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.05)
    plain = CycleGANNets(_plain_model()).D_B
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in plain.modules())


def test_bench_batch_reports_images_per_second_against_one_fp32_image(capsys):
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench_batch

    assert bench_batch.main(["--size", "32", "--batches", "1,2", "--precisions", "fp32",
                             "--rounds", "1", "--steps", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| batch")]
    assert [r.split(" | ")[0] for r in rows] == ["| batch 1, fp32", "| batch 2, fp32"]
    assert rows[0].endswith("| 1.00x |") and "x** (" in rows[1]


def test_bench_upsample_times_both_resize_convolutions(capsys):
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench_upsample

    assert bench_upsample.main(["--rounds", "1", "--precisions", "fp32"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `fast`")]
    assert len(rows) == 3 and all("| fp32 |" in r and "x** (" in r for r in rows)


def test_pixel_shuffle_generator_has_no_full_resolution_convolution_and_fewer_macs():
    """--pixel-shuffle: the ResNet's stem and head run on 2x2 pixel blocks at H/2 (pixel unshuffle
    and shuffle), so no convolution sees the full-resolution image and the generator costs well
    under the paper layout's multiply-adds at the same width; any H, W that are multiples of 4 fit,
    and the output follows the input (each 2x2 output block is not a copy of one value)."""
    from cyclekit.nn import count_macs

    cfg = load_config(PRESET).model
    cfg.image_size, cfg.pixel_shuffle = 64, False
    plain = CycleGANNets(cfg).G_AB
    cfg.pixel_shuffle = True
    torch.manual_seed(0)
    g = CycleGANNets(cfg).G_AB.eval()
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-1]))
             for m in g.modules() if isinstance(m, torch.nn.Conv2d)]
    x = torch.rand(2, 3, 64, 48) * 2 - 1
    with torch.no_grad():
        y = g(x)
    for h in hooks:
        h.remove()
    assert y.shape == x.shape and max(seen) <= 48 // 2 + 2  # widest conv input: W/2 plus padding
    assert count_macs(g, (1, 3, 64, 64)) < 0.8 * count_macs(plain, (1, 3, 64, 64))
    blocks = y.unfold(2, 2, 2).unfold(3, 2, 2)  # (N, C, H/2, W/2, 2, 2)
    assert (blocks.amax((-1, -2)) - blocks.amin((-1, -2))).mean() > 1e-3
    cfg.generator = "unet"
    with pytest.raises(ConfigError, match="pixel-shuffle"):
        Config(model=cfg).validate()
