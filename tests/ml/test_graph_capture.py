"""Graph capture: every supported spelling gives the expected layer plan and reproduces the model in float;
BatchNorm folds with its eval statistics; every refusal names the module type and name, what is supported
and a hint."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.ml.graph_capture import QuantizationError, layer_plan, plan_forward
from sparsegate.sw.ml.quantize import calibration_split, quantize_model
from sparsegate.sw.ml.train import TrainConfig, train


class ConvBnNet(nn.Module):
    """conv -> BN -> in-place functional ReLU -> pool, view(size(0), -1), Dropout, fc -> BN1d -> ReLU -> fc."""

    input_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.3)
        self.fc1 = nn.Linear(6 * 12 * 12, 32)
        self.bn2 = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x)), inplace=True), 2)
        x = self.drop(x.view(x.size(0), -1))
        return self.fc2(F.dropout(F.relu(self.bn2(self.fc1(x))), 0.2, self.training))


def sequential_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Dropout2d(0.1), nn.Flatten(), nn.Identity(), nn.Linear(4 * 14 * 14, 16), nn.ReLU6(),
                         nn.Dropout(0.5), nn.Linear(16, 10))


class Spelled(nn.Module):
    """One conv + two fcs with a chosen flatten and ReLU spelling."""

    input_shape = (1, 12, 12)

    def __init__(self, flatten, relu):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc1 = nn.Linear(3 * 10 * 10, 8)
        self.fc2 = nn.Linear(8, 4)
        self.flatten, self.relu = flatten, relu
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.relu(self, self.conv(x))
        x = self.flatten(self, x)
        return self.fc2(self.relu(self, self.fc1(x)))


FLATTENS = {
    "torch.flatten": lambda m, x: torch.flatten(x, 1),
    "x.flatten(1)": lambda m, x: x.flatten(1),
    "x.view(x.size(0), -1)": lambda m, x: x.view(x.size(0), -1),
    "x.view(-1, K)": lambda m, x: x.view(-1, 300),
    "x.reshape(x.shape[0], -1)": lambda m, x: x.reshape(x.shape[0], -1),
    "torch.reshape": lambda m, x: torch.reshape(x, (x.size(0), -1)),
    "x.contiguous().view(N, C*H*W)": lambda m, x: x.contiguous().view(x.size(0), x.size(1) * x.size(2) * x.size(3)),
}
RELUS = {
    "F.relu": lambda m, x: F.relu(x),
    "F.relu(inplace=True)": lambda m, x: F.relu(x, inplace=True),
    "torch.relu": lambda m, x: torch.relu(x),
    "torch.relu_": lambda m, x: torch.relu_(x),
    "x.relu()": lambda m, x: x.relu(),
    "x.relu_()": lambda m, x: x.relu_(),
    "nn.ReLU(inplace=True)": lambda m, x: m.act(x),
    "x.clamp(min=0)": lambda m, x: x.clamp(min=0),
}


def _same(model, plan, shape, n=4):
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model.eval()(x)
        got = plan_forward(plan, x)
    return torch.allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flatten", sorted(FLATTENS))
@pytest.mark.parametrize("relu", sorted(RELUS))
def test_every_flatten_and_relu_spelling_gives_the_same_plan(flatten, relu):
    model = Spelled(FLATTENS[flatten], RELUS[relu])
    plan = layer_plan(model)
    assert [(p.name, p.flatten_input, p.relu, p.pool) for p in plan] == [
        ("conv", False, True, False), ("fc1", True, True, False), ("fc2", False, False, False)]
    assert _same(model, plan, model.input_shape)


@pytest.fixture(scope="module")
def trained_bn(mnist5k):
    """ConvBnNet trained 60 steps on real digits, so its BatchNorm running statistics are the data's."""
    torch.manual_seed(0)
    model = ConvBnNet()
    subset = TensorDataset(*(t[:1920] for t in mnist5k[0].tensors))
    train(model, subset, TrainConfig(epochs=2, lr=2e-3, seed=0, progress=False, augment_shift=0))
    return model.eval()


def test_batchnorm_folds_with_eval_statistics(trained_bn, mnist5k):
    bn = trained_bn.bn1
    assert float((bn.running_mean).abs().max()) > 0.05 and float((bn.running_var - 1).abs().max()) > 0.05
    plan = layer_plan(trained_bn)
    assert [(p.name, p.bn is not None, p.flatten_input, p.relu, p.pool) for p in plan] == [
        ("conv1", True, False, True, True), ("fc1", True, True, True, False), ("fc2", False, False, False, False)]
    x = mnist5k[1].tensors[0][:64]
    with torch.no_grad():
        want = trained_bn(x)
        got = plan_forward(plan, x)
        unfolded = plan_forward([type(p)(p.name, p.module, None, p.flatten_input, p.relu, p.pool) for p in plan], x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    assert not torch.allclose(unfolded, want, rtol=1e-2, atol=1e-2 * float(want.abs().max()))  # BN mattered
    assert trained_bn.training is False


def test_a_bn_model_quantizes_and_keeps_its_accuracy(trained_bn, mnist5k):
    qnet = quantize_model(trained_bn, calibration_split(mnist5k[0], 256), name="convbn")
    test_x, test_y = mnist5k[1].tensors
    with torch.no_grad():
        float_pred = trained_bn(test_x).argmax(1).numpy()
    int_pred = qnet.predict(test_x.numpy())
    assert (float_pred == test_y.numpy()).mean() > 0.75  # 60 steps
    assert (int_pred == float_pred).mean() >= 0.98


def test_sequential_model_with_relu6_clamps_through_the_output_scale(mnist5k):
    torch.manual_seed(0)
    model = sequential_net()
    with torch.no_grad():  # non-trivial eval statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    plan = layer_plan(model, (1, 28, 28))
    assert [(p.name, p.bn is not None, p.relu, p.pool, p.clamp) for p in plan] == [
        ("0", True, True, True, None), ("7", False, True, False, 6.0), ("10", False, False, False, None)]
    assert _same(model, plan, (1, 28, 28))
    qnet = quantize_model(model, calibration_split(mnist5k[0], 64), name="seq")
    assert qnet.layers[1].out_scale == float(np.float32(6.0 / 127))


@pytest.mark.parametrize("act, clamp", [(nn.Hardtanh(0.0, 2.0), 2.0), (nn.ReLU6(), 6.0),
                                        (lambda x: torch.clamp(x, 0, 3.0), 3.0), (lambda x: F.relu6(x), 6.0),
                                        (lambda x: F.hardtanh(x, 0.0, 1.5), 1.5)])
def test_clamp_spellings(act, clamp):
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), act if isinstance(act, nn.Module) else _Lambda(act),
                          nn.Linear(8, 2))
    plan = layer_plan(model, (1, 4, 4))
    assert plan[0].relu and plan[0].clamp == clamp and plan[1].clamp is None
    assert _same(model, plan, (1, 4, 4), n=16)


class _Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


# ------------------------------------------------------------------------------------------------ refusals

class _Chain(nn.Module):
    """conv1 -> body -> flatten -> fc, with ``body`` a callable under test."""

    input_shape = (1, 8, 8)

    def __init__(self, body, fc_in=4 * 6 * 6, conv=None):
        super().__init__()
        self.conv1 = conv or nn.Conv2d(1, 4, 3)
        self.body = body
        self.fc = nn.Linear(fc_in, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.body(self.conv1(x)), 1))


class _AvgThenConv(nn.Module):
    """conv -> BN -> ReLU -> 2x2 average pool -> conv k x k (padding k // 2) -> global average pool -> fc."""

    input_shape = (1, 12, 12)

    def __init__(self, k=3, gap=None):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, k, padding=k // 2)
        self.gap = gap or (lambda x: torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        return self.fc(self.gap(F.relu(self.conv2(x))))


class _Residual(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(128, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.conv1(x) + x, 1))  # broadcasts (1, 8, 8) over (2, 8, 8)


class _ReluOnABranch(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(128, 2)

    def forward(self, x):
        y = self.conv1(x)
        return self.fc(torch.flatten(F.relu(y) + y, 1))


class _ConvAfterFc(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 64)
        self.conv2 = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.conv2(self.fc(x.flatten(1)).view(-1, 1, 8, 8))


class _Sigmoid(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        return self.fc(torch.sigmoid(self.conv1(x)).flatten(1))


class _LinearOn4d(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(x)


class _BnAfterRelu(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        return self.fc(self.bn1(F.relu(self.conv1(x))).flatten(1))


REFUSALS = [
    (_Chain(nn.AvgPool2d(3), 4 * 2 * 2), ["AvgPool2d 'body'", "average pool of (4, 6, 6) to (4, 2, 2)",
                                          "hint: use nn.AvgPool2d(2) or nn.AdaptiveAvgPool2d(1)"]),
    (_Chain(nn.Sequential(nn.AvgPool2d(2), nn.ReLU()), 4 * 3 * 3),
     ["ReLU 'body.1'", "an activation after an average pool", "hint: apply the ReLU before the pool"]),
    (_AvgThenConv(5), ["Conv2d 'conv2'", "after a 2x2 average pool", "hint: use nn.MaxPool2d(2)"]),
    (_Chain(nn.Hardtanh(-1.0, 1.0)), ["Hardtanh 'body'", "clamp to [-1.0, 1.0]", "hint: use nn.ReLU6"]),
    (_Chain(nn.GELU()), ["GELU 'body'", "not an operation the engine runs"]),
    (_Chain(nn.MaxPool2d(3), 4 * 2 * 2), ["MaxPool2d 'body'", "only 2x2", "hint: use nn.MaxPool2d(2)"]),
    (_Chain(nn.Identity(), 4 * 8 * 8, nn.Conv2d(1, 4, 3, dilation=2, padding=2)), ["Conv2d 'conv1'", "dilation=(2, 2)"]),
    (_Chain(nn.BatchNorm2d(4, track_running_stats=False)), ["BatchNorm2d 'body'", "track_running_stats"]),
    (_Residual(), ["function operator.add ('add')", "different shapes (2, 8, 8) and (1, 8, 8)",
                   "hint: add two conv maps of the same shape"]),
    (_ReluOnABranch(), ["function torch.nn.functional.relu ('relu')", "also read without it", "hint: read the"]),
    (_ConvAfterFc(), ["method .view() ('view')", "unflattens (64,) to (1, 8, 8)", "hint: put every conv before"]),
    (_Sigmoid(), ["function torch.sigmoid ('sigmoid')", "not an operation the engine runs"]),
    (_LinearOn4d(), ["Linear 'fc'", "3-D input", "hint: flatten first: torch.flatten(x, 1)"]),
    (_BnAfterRelu(), ["BatchNorm2d 'bn1'", "not directly after a Conv2d/Linear", "hint: put the BatchNorm right"]),
]


@pytest.mark.parametrize("model, parts", REFUSALS, ids=[type(m).__name__ + str(i) for i, (m, _) in enumerate(REFUSALS)])
def test_refusals_name_the_module_what_is_supported_and_a_hint(model, parts):
    with pytest.raises(QuantizationError) as info:
        layer_plan(model)
    message = str(info.value)
    for part in parts:
        assert part in message, message
    assert "supported: Conv2d" in message and "hint: " in message and "0x" not in message
    assert "\n" not in message


def test_a_view_that_is_not_a_flatten_is_refused():
    class ViewNet(nn.Module):
        input_shape = (1, 8, 8)

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(72, 2)

        def forward(self, x):
            return self.fc(self.conv1(x).view(x.size(0), 2, -1)).sum(1)

    with pytest.raises(QuantizationError, match=r"method \.view\(\) \('view'\): reshapes \(4, 6, 6\) to \(2, 2, 72\)"
                                                r".*hint: use torch.flatten\(x, 1\)"):
        layer_plan(ViewNet())


def test_a_model_without_input_shape_needs_one():
    with pytest.raises(QuantizationError, match="input_shape attribute"):
        layer_plan(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(QuantizationError, match=r"a zero input of shape \(1, 3, 3\) does not run through the model "
                                                r"\(RuntimeError: mat1 and mat2 shapes cannot be multiplied"):
        layer_plan(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (1, 3, 3))
    assert len(layer_plan(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (1, 2, 2))) == 1


# ------------------------------------------------------------------------------------------ average pools

AVG_MODELS = {
    "AvgPool2d(2) -> flatten -> fc": (_Chain(nn.Sequential(nn.ReLU(), nn.AvgPool2d(2)), 4 * 3 * 3), (1, 8, 8),
                                      [("conv1", None), ("fc", ("avg2", (4, 6, 6)))]),
    "F.avg_pool2d -> view -> fc": (_Chain(_Lambda(lambda x: F.avg_pool2d(x, 2)), 4 * 3 * 3), (1, 8, 8),
                                   [("conv1", None), ("fc", ("avg2", (4, 6, 6)))]),
    "AdaptiveAvgPool2d(1) -> flatten -> fc": (_Chain(nn.AdaptiveAvgPool2d(1), 4), (1, 8, 8),
                                              [("conv1", None), ("fc", ("gap", (4, 6, 6)))]),
    "x.mean((2, 3)) -> fc": (_AvgThenConv(3, lambda x: x.mean((2, 3))), (1, 12, 12),
                             [("conv1", None), ("conv2", ("avg2", (4, 12, 12))), ("fc", ("gap", (6, 6, 6)))]),
    "AvgPool2d -> conv 3x3 -> adaptive gap -> fc": (_AvgThenConv(3), (1, 12, 12),
                                                    [("conv1", None), ("conv2", ("avg2", (4, 12, 12))),
                                                     ("fc", ("gap", (6, 6, 6)))]),
    "AvgPool2d -> conv 1x1 -> adaptive gap -> fc": (_AvgThenConv(1), (1, 12, 12),
                                                    [("conv1", None), ("conv2", ("avg2", (4, 12, 12))),
                                                     ("fc", ("gap", (6, 6, 6)))]),
}


@pytest.mark.parametrize("name", sorted(AVG_MODELS))
def test_average_pools_fold_into_the_next_layer_exactly(name):
    model, shape, expected = AVG_MODELS[name]
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    plan = layer_plan(model, shape)
    assert [(p.name, p.avg_input) for p in plan] == expected
    assert _same(model, plan, shape, n=8)
    for p in plan:
        if p.avg_input and p.is_conv:
            k = p.module.kernel_size[0]
            assert (p.stride, p.padding, tuple(p.params()[0].shape[2:])) == (2, 2 * (k // 2), (2 * k, 2 * k))


def test_folded_average_pools_quantize_close_to_float(mnist5k):
    """The golden model of an avg-pool/GAP network (conv 3x3 after a 2x2 average pool, GAP before the fc)
    agrees with the float model's predictions on real digits."""
    class AvgNet(nn.Module):
        input_shape = (1, 28, 28)

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = F.avg_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
            x = F.relu(self.conv2(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    torch.manual_seed(0)
    model = AvgNet()
    subset = TensorDataset(*(t[:1280] for t in mnist5k[0].tensors))
    train(model, subset, TrainConfig(epochs=1, lr=3e-3, seed=0, progress=False, augment_shift=0))
    model.eval()
    qnet = quantize_model(model, calibration_split(mnist5k[0], 256), name="avgnet")
    assert [(q.kind, q.kernel, q.stride, q.padding, q.in_shape) for q in qnet.layers] == [
        ("conv", (3, 3), 1, 1, (1, 28, 28)), ("conv", (6, 6), 2, 2, (8, 28, 28)), ("fc", (1, 1), 1, 0, (16 * 14 * 14,))]
    x = mnist5k[1].tensors[0][:300]
    with torch.no_grad():
        logits = model(x)
    got = qnet.logits(qnet.quantize_input(x.numpy())) * qnet.layers[-1].out_scale
    assert np.corrcoef(logits.numpy().ravel(), got.ravel())[0, 1] > 0.99
    assert (got.argmax(1) == logits.argmax(1).numpy()).mean() >= 0.95


def test_an_mlp_on_vector_inputs_quantizes_as_a_flat_image(mnist5k):
    """A model whose input is a vector (features,): the integer network takes a (features, 1, 1) input that
    its first fc layer flattens (the layout the engine runs), and predicts from the vectors."""
    train_x, train_y = mnist5k[0].tensors
    vectors = TensorDataset(train_x[:1500].flatten(1), train_y[:1500])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))
    train(model, vectors, TrainConfig(epochs=2, lr=3e-3, seed=0, progress=False, augment_shift=0))
    model.eval()
    qnet = quantize_model(model, calibration_split(vectors, 256), name="mlp")
    assert qnet.input_shape == (784, 1, 1) and qnet.layers[0].flatten_input and qnet.layers[0].in_shape == (784,)
    test_x = mnist5k[1].tensors[0][:300].flatten(1)
    with torch.no_grad():
        float_pred = model(test_x).argmax(1).numpy()
    assert (qnet.predict(test_x.numpy()) == float_pred).mean() >= 0.97
