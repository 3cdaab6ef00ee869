"""The QAConv neck options: the default is the neck occtool always built (same weights from the
same seed, same state-dict keys, no checkpoint entry); the 3x3 / two-layer / position necks
equal a slow per-location reference and survive a checkpoint round trip."""

from __future__ import annotations

import torch
from torch import nn

from occtool.models import FaceModel, build_backbone, load_model_checkpoint, save_model_checkpoint
from occtool.models.neck import build_neck


def test_default_neck_is_the_old_neck_bit_for_bit():
    torch.manual_seed(3)
    old = nn.Sequential(nn.Conv2d(512, 16, 1, bias=False), nn.BatchNorm2d(16))
    nn.init.kaiming_normal_(old[0].weight, mode="fan_in", nonlinearity="linear")
    after_old = torch.rand(3)
    torch.manual_seed(3)
    new = build_neck(512, 16)
    assert list(new.state_dict()) == list(old.state_dict())
    assert torch.equal(new[0].weight, old[0].weight)
    assert torch.equal(torch.rand(3), after_old)  # the same random draws: training runs stay identical


def _reference(neck: nn.Sequential, fm: torch.Tensor, *, kernel: int, hidden: bool, position: bool) -> torch.Tensor:
    """Per output location, the sum over the kernel window written out (eval-mode BatchNorm)."""
    def conv(x, w, k):
        b, c, h, wd = x.shape
        pad = k // 2
        xp = torch.zeros(b, c, h + 2 * pad, wd + 2 * pad, dtype=x.dtype)
        xp[:, :, pad:pad + h, pad:pad + wd] = x
        out = torch.zeros(b, w.shape[0], h, wd, dtype=x.dtype)
        for i in range(h):
            for j in range(wd):
                patch = xp[:, :, i:i + k, j:j + k]  # [B, C, k, k]
                out[:, :, i, j] = torch.einsum("bcuv,ocuv->bo", patch, w)
        return out

    def bn(x, m):
        return (x - m.running_mean[None, :, None, None]) / torch.sqrt(m.running_var[None, :, None, None] + m.eps) \
            * m.weight[None, :, None, None] + m.bias[None, :, None, None]

    x = bn(conv(fm, neck[0].weight.double(), kernel), neck[1])
    if hidden:
        x = bn(conv(torch.relu(x), neck[3].weight.double(), 1), neck[4])
    if position:
        x = x + neck[-1].position.double()
    return x


def test_neck_options_match_the_slow_reference():
    torch.manual_seed(0)
    fm = torch.randn(3, 8, 5, 5, dtype=torch.float64)
    for kernel, hidden, position in ((1, None, False), (3, None, False), (3, 6, True), (1, 6, False)):
        neck = build_neck(8, 4, kernel=kernel, hidden=hidden, position=position, map_size=(5, 5)).double()
        for m in neck.modules():  # non-trivial statistics and offsets
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.5, 0.5)
        if position:
            neck[-1].position.data.normal_()
        neck.eval()
        ref = _reference(neck, fm, kernel=kernel, hidden=hidden is not None, position=position)
        assert torch.allclose(neck(fm), ref, atol=1e-10), (kernel, hidden, position)


def test_position_starts_as_identity_and_trains():
    neck = build_neck(8, 4, position=True, map_size=(3, 3)).train()
    base = nn.Sequential(*list(neck)[:-1])
    x = torch.randn(4, 8, 3, 3)
    assert torch.equal(neck(x), base(x))
    neck(x).square().sum().backward()
    assert neck[-1].position.grad.abs().sum() > 0


def test_checkpoint_round_trip_keeps_neck_options(tmp_path):
    torch.manual_seed(0)
    model = FaceModel(backbone=build_backbone("mobilefacenet"), hidden_channels=8, neck_channels=12,
                      neck_kernel=3, neck_hidden=20, neck_position=True).eval()
    with torch.no_grad():
        model.neck[-1].position.normal_()
    save_model_checkpoint(tmp_path / "m.pt", model=model, matcher=None, config={})
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["model"]["neck_options"] == {"kernel": 3, "hidden": 20, "position": True}
    back = load_model_checkpoint(tmp_path / "m.pt").model
    fm = torch.randn(2, 512, 7, 7)
    assert torch.equal(back.match_features(fm), model.match_features(fm))
    plain = FaceModel(backbone=build_backbone("mobilefacenet"), hidden_channels=8, neck_channels=12)
    save_model_checkpoint(tmp_path / "p.pt", model=plain, matcher=None, config={})
    assert "neck_options" not in torch.load(tmp_path / "p.pt", weights_only=True)["model"]


def test_local_neck_is_each_locations_contribution_to_the_embedding():
    """neck_local at its initial state (fresh BatchNorm statistics, identity 1x1): location l of
    the map is raw(fm * onehot_l) - raw(0), the output layer run once per location (the slow
    reference), up to the BatchNorms' eps."""
    from tests.models.test_export import TinyBackbone

    torch.manual_seed(0)
    bb = TinyBackbone().eval()
    model = FaceModel(backbone=bb, hidden_channels=4, neck_channels=6, neck_local=True).eval()
    assert model.neck_options == {"kernel": 1, "hidden": None, "position": False, "local": True}
    fm = torch.randn(2, 8, 4, 4)
    got = model.match_features(fm)  # [2, 6, 4, 4]
    b = bb.embed_raw(torch.zeros(1, 8, 4, 4))
    for i in range(4):
        for j in range(4):
            onehot = torch.zeros(1, 1, 4, 4)
            onehot[0, 0, i, j] = 1.0
            ref = (bb.embed_raw(fm * onehot) - b) / (1 + 1e-5)  # two fresh BNs: x / sqrt(1 + eps) each
            assert torch.allclose(got[:, :, i, j], ref, atol=1e-5)
    assert "neck.0.jacobian" in model.state_dict() and "jacobian" not in dict(model.neck.named_parameters())


def test_local_neck_checkpoint_round_trip_and_no_neck(tmp_path):
    from tests.models.test_export import TinyBackbone

    torch.manual_seed(0)
    model = FaceModel(backbone=TinyBackbone(), hidden_channels=4, neck_channels=5, neck_local=True).eval()
    save_model_checkpoint(tmp_path / "m.pt", model=model, matcher=None, config={})
    assert torch.load(tmp_path / "m.pt", weights_only=True)["model"]["neck_options"]["local"] is True
    assert FaceModel(backbone=TinyBackbone(), neck_channels=None, neck_local=True).neck is None
    # a registered backbone loads back with the saved projection (given here as a tensor: not recomputed)
    jac = torch.randn(512, 49, 128) * 0.01
    model = FaceModel(backbone=build_backbone("mobilefacenet"), hidden_channels=8, neck_channels=16,
                      neck_local=jac).eval()
    with torch.no_grad():
        model.neck[0].norm.running_mean.uniform_(-0.1, 0.1)
    save_model_checkpoint(tmp_path / "l.pt", model=model, matcher=None, config={})
    back = load_model_checkpoint(tmp_path / "l.pt").model
    fm = torch.randn(2, 512, 7, 7)
    assert back.neck_options["local"] is True and torch.equal(back.neck[0].jacobian, jac)
    assert torch.equal(back.match_features(fm), model.match_features(fm))
