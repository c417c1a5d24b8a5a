"""Network shapes, gradient reversal, DCGAN init."""
from __future__ import annotations

import warnings

import pytest
import torch

from hw3 import distributed
from models import (
    DANN,
    ACGANDiscriminator,
    ACGANGenerator,
    DCGANDiscriminator,
    DCGANGenerator,
    FeatureCritic,
    GradientReversal,
    InputNorm,
    LeNetClassifier,
    LeNetEncoder,
    dann_coeff,
    init_dcgan,
)


def test_gan_shapes():
    z = torch.randn(4, 100)
    assert DCGANGenerator()(z).shape == (4, 3, 64, 64)
    assert DCGANDiscriminator()(torch.randn(4, 3, 64, 64)).shape == (4,)
    img = ACGANGenerator()(z, torch.tensor([0, 1, 0, 1]))
    assert img.shape == (4, 3, 64, 64) and img.abs().max() <= 1
    rf, attr = ACGANDiscriminator()(img)
    assert rf.shape == (4,) and attr.shape == (4, 2)


def test_acgan_generator_uses_the_attribute():
    g = ACGANGenerator().eval()
    z = torch.randn(2, 100)
    assert not torch.allclose(g(z, torch.tensor([0, 0])), g(z, torch.tensor([1, 1])))


def test_digit_shapes():
    x = torch.randn(5, 3, 28, 28)
    cls, dom = DANN()(x)
    assert cls.shape == (5, 10) and dom.shape == (5, 2)
    assert DANN().features(x).shape == (5, 768)
    f = LeNetEncoder()(x)
    assert f.shape == (5, 500) and LeNetClassifier()(f).shape == (5, 10) and FeatureCritic()(f).shape == (5, 2)


@pytest.mark.parametrize("coeff", [1.0, 0.3])
def test_gradient_reversal_flips_and_scales(coeff):
    x = torch.randn(3, 4, requires_grad=True)
    y = GradientReversal(coeff)(x)
    assert torch.equal(y, x)
    (y * torch.arange(4.0)).sum().backward()
    assert torch.allclose(x.grad, -coeff * torch.arange(4.0).expand(3, 4))


def test_domain_loss_reaches_features_reversed():
    torch.manual_seed(0)
    net = DANN()
    x = torch.randn(8, 3, 28, 28)
    grads = []
    for coeff in (1.0, -1.0):  # coeff -1 turns the reversal layer into an identity
        net.zero_grad()
        net.domain_classifier.reverse.coeff = coeff
        net(x)[1][:, 0].sum().backward()
        grads.append(net.features.net[1].weight.grad.clone())
    assert torch.allclose(grads[0], -grads[1], atol=1e-6) and grads[0].abs().sum() > 0


def test_dann_coeff_schedule():
    assert dann_coeff(0.0) == 0.0 and abs(dann_coeff(1.0) - 0.9999092) < 1e-6
    assert dann_coeff(0.1) < dann_coeff(0.5) < dann_coeff(0.9)


def test_input_norm_removes_colour_and_contrast():
    x = torch.randn(2, 3, 28, 28)
    y = InputNorm()(x * 5 + 3)
    assert torch.allclose(y, InputNorm()(x), atol=1e-5)


def test_dcgan_init():
    torch.manual_seed(0)
    g = DCGANGenerator()
    g.apply(init_dcgan)
    w = g.net[1][0].weight
    assert abs(w.std().item() - 0.02) < 0.002
    bn = g.net[1][1]
    assert abs(bn.weight.mean().item() - 1) < 0.01 and bn.bias.abs().max() == 0


def test_global_batchnorm_equals_batchnorm_in_one_process(tmp_path):
    """GlobalBatchNorm (the global-batch BatchNorm of torchrun runs) with one rank: the outputs, gradients and running
    statistics of nn.BatchNorm2d (the 2-rank equality is tested end to end in test_gan.py)."""
    import torch.distributed as dist

    from hw3.distributed import GlobalBatchNorm, global_batchnorm

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
        synced = global_batchnorm(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)))
        synced.load_state_dict(plain.state_dict())
        assert isinstance(synced[1], GlobalBatchNorm)
        x = torch.randn(8, 3, 10, 10)
        outs = [net(x) for net in (plain, synced)]
        for out in outs:
            (out ** 2).mean().backward()
        assert torch.allclose(outs[0], outs[1], atol=1e-5)
        assert torch.allclose(plain[0].weight.grad, synced[0].weight.grad, atol=1e-5)
        for k in ("running_mean", "running_var"):
            assert torch.allclose(getattr(plain[1], k), getattr(synced[1], k), atol=1e-6)
        plain.eval(), synced.eval()
        assert torch.allclose(plain(x), synced(x), atol=1e-5)
    finally:
        dist.destroy_process_group()


def test_precision_choices():
    cpu = torch.device("cpu")
    distributed.set_precision("fp32", cpu)
    assert distributed.precision(cpu) == "fp32" and distributed.precision(torch.device("cuda")) == "fp32"
    distributed.set_precision("auto", cpu)
    assert distributed.precision(cpu) == "fp32" and distributed.precision(torch.device("cuda")) == "bf16 autocast"
    if distributed.cpu_bf16():
        distributed.set_precision("bf16", cpu)
        with distributed.autocast(cpu):
            assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16
        with distributed.autocast(cpu, training=False):  # predictions on CPU stay fp32
            assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32
    distributed.set_precision("auto", cpu)


def test_inference_is_exact_fp32_on_every_device():
    """autocast(training=False) is exact fp32 on CUDA too: no autocast, no TF32 inside, the flags restored after."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # what setup() sets on CUDA
    try:
        distributed.set_precision("auto", torch.device("cpu"))  # auto: bf16 training on CUDA
        with distributed.autocast(torch.device("cuda"), training=False):
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
            assert not torch.is_autocast_enabled("cpu")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        with warnings.catch_warnings():  # building a CUDA autocast on a machine without CUDA warns
            warnings.simplefilter("ignore", UserWarning)
            assert isinstance(distributed.autocast(torch.device("cuda")), torch.autocast)  # training keeps bf16
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def test_cuda_rng_states_come_back_for_the_gpus_there_are(monkeypatch):
    """A run saved on 2 GPUs resumes on 1 (only GPU 0's state is set); one saved on a CPU has none to set."""
    from hw3 import checkpoints

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append((int(state[0]), device)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("sets every saved GPU"))
    state = {"torch": torch.get_rng_state(), "python": list(__import__("random").getstate()[1])}
    checkpoints.set_rng_state({**state, "cuda": [torch.tensor([7], dtype=torch.uint8),
                                                 torch.tensor([9], dtype=torch.uint8)]})
    assert calls == [(7, 0)]
    checkpoints.set_rng_state(state)
    assert calls == [(7, 0)]


def test_a_batch_generator_saved_on_another_device_resumes_deterministically(capsys):
    """A CUDA generator's state (16 bytes) cannot enter a CPU generator (nor the reverse): the generator is seeded
    from it instead, the same way every time, with a line saying so; a state of the same device is put back."""
    from hw3 import checkpoints

    foreign = torch.arange(16, dtype=torch.uint8)  # the size of a CUDA (Philox) generator's state
    draws = []
    for _ in range(2):
        rng = torch.Generator().manual_seed(123)
        checkpoints.restore_generator(rng, foreign)
        draws.append(torch.rand(4, generator=rng))
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], torch.rand(4, generator=torch.Generator().manual_seed(123)))
    assert "another device" in capsys.readouterr().out
    same = torch.Generator().manual_seed(5)
    saved, want = same.get_state(), torch.rand(3, generator=same)
    rng = torch.Generator()
    checkpoints.restore_generator(rng, saved)
    assert torch.equal(torch.rand(3, generator=rng), want) and capsys.readouterr().out == ""


def test_adabn_recomputes_batchnorm_statistics_on_the_given_images():
    from hw3 import evaluation

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.BatchNorm1d(3 * 2 * 2))
    images = torch.randint(0, 256, (64, 3, 2, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    evaluation.recompute_bn_stats(net, images, torch.device("cpu"), batch=64)  # one batch: the set's statistics
    x = (images.float() / 127.5 - 1).flatten(1)
    assert torch.allclose(net[1].running_mean, x.mean(0), atol=1e-5)
    assert torch.allclose(net[1].running_var, x.var(0), atol=1e-4)
    assert not net.training and net[1].momentum == 0.1  # back to eval mode, momentum restored


def test_domain_bn_keeps_the_domains_statistics_apart():
    """With n_source the source half passes the feature extractor's BatchNorm with its own batch statistics: what the
    target half holds cannot change the source features (without it, it does)."""
    torch.manual_seed(0)
    net = DANN(True, "bn").train()
    seen = []
    net.label_classifier.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0][:8].detach()))
    xs, xt = torch.randn(8, 3, 28, 28), torch.randn(8, 3, 28, 28)
    for n_source in (8, None):
        for t in (xt, torch.rand(8, 3, 28, 28) ** 4):  # per-image normalisation would undo an affine change
            torch.manual_seed(1)  # the same dropout masks
            net(torch.cat([xs, t]), n_source=n_source)
    assert torch.allclose(seen[0], seen[1], atol=1e-5)
    assert not torch.allclose(seen[2], seen[3], atol=1e-3)
