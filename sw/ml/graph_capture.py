"""Graph capture: a float PyTorch model traced with torch.fx into the engine's layers.

:func:`layer_plan` traces the model, propagates the shapes of one sample input, and walks the graph once:

* ``Conv2d``/``Linear`` start a layer; a ``BatchNorm1d/2d`` right after one is folded into it with its
  eval statistics (:meth:`PlanLayer.params`, differentiable, so quantization-aware training sees it too);
* ReLU in every spelling (``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()``, in place or not, and
  ``clamp(min=0)``) is fused; ReLU6, ``Hardtanh(0, t)`` and ``clamp(0, t)`` become a ReLU whose int8
  output scale is fixed at ``t / 127``, so the engine's saturation at 127 *is* the clamp at ``t``;
* a 2x2/stride-2 max-pool is fused into the conv before it;
* a 2x2/stride-2 average pool and a global average pool (``AvgPool2d``, ``AdaptiveAvgPool2d``,
  ``F.avg_pool2d``, ``x.mean((2, 3))``) are folded into the layer *after* them, exactly: an fc layer reads
  the unpooled map with each weight spread over the pooled pixels (divided by their count), and a
  ``k x k`` conv after a 2x2 average pool becomes a ``2k x 2k`` conv with stride 2 (each weight repeated
  over a 2x2 block, divided by 4) — no new integer operation, the engine runs them as they are;
* ``torch.flatten(x, 1)``, ``x.flatten(1)``, ``nn.Flatten()``, ``x.view(x.size(0), -1)``,
  ``x.reshape(N, -1)``, ``x.view(-1, K)`` ... — any view/reshape whose output is (batch, features) — is
  the flatten before the first fc layer (a no-op on a flat input);
* ``Dropout`` (all kinds, module or function), ``Identity`` and ``contiguous()`` are removed (eval mode);
* a residual add of two tensors of the same shape (``a + b``, ``torch.add``, ``operator.add``, ``+=``) is a
  layer of its own (``add``) reading both, with the ReLU after it fused; a layer may read any earlier
  tensor (a block input read by a conv and by the add, a downsampling shortcut conv): ``PlanLayer.inputs``
  names the tensors (0 = the model input, ``k`` = layer ``k - 1``'s output).

Anything else is refused with :class:`QuantizationError` naming the module type and name (or the function),
what is supported, and a hint.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

SUPPORTED = ("supported: Conv2d (groups 1, dilation 1, stride 1 or 2, square zero padding, kernel up to 7), "
             "Linear, BatchNorm1d/2d right after them, ReLU/ReLU6/Hardtanh(0, t), 2x2 max-pool stride 2, "
             "2x2 average pool or global average pool before a Linear (or a 3x3 conv), "
             "flatten/view/reshape to (batch, features), Dropout/Identity, "
             "residual add of two conv maps of the same shape (then ReLU)")

_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_IDENTITY_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
                       F.feature_alpha_dropout, torch.dropout}
_IDENTITY_METHODS = {"contiguous"}
_RELU_FUNCTIONS = {F.relu, torch.relu, F.relu_, torch.relu_}
_RELU_METHODS = {"relu", "relu_"}
_CLAMP_FUNCTIONS = {torch.clamp, torch.clip}
_CLAMP_METHODS = {"clamp", "clip", "clamp_", "clip_"}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}
_ADD_TARGETS = {operator.add, operator.iadd, torch.add, "add", "add_"}
_AVG_POOLS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_AVG_FUNCTIONS = {F.avg_pool2d, F.adaptive_avg_pool2d}


class QuantizationError(ValueError):
    """The model cannot be expressed with the engine's layers, or its values do not fit the formats."""


@dataclass
class PlanLayer:
    """One conv/linear layer of the model and what is fused into it (folded BatchNorm, ReLU/clamp, max-pool)."""

    name: str
    module: nn.Module
    bn: nn.Module | None = None
    flatten_input: bool = False
    relu: bool = False
    pool: bool = False
    clamp: float | None = None  # ReLU6 / Hardtanh(0, t): the upper clamp t (fixes the output scale to t/127)
    avg_input: tuple | None = None  # ("avg2" | "gap", (C, H, W)): an average pool of that map folded in
    inputs: tuple | None = None  # tensors read (0 = model input, k = layer k-1's output); None = the previous

    @property
    def is_conv(self) -> bool:
        return isinstance(self.module, nn.Conv2d)

    @property
    def is_add(self) -> bool:
        """A residual add of its two input tensors (``module`` is None)."""
        return self.module is None

    @property
    def stride(self) -> int:
        return (2 if self.avg_input else _pair(self.module.stride)[0]) if self.is_conv else 1

    @property
    def padding(self) -> int:
        return (2 if self.avg_input else 1) * _pair(self.module.padding)[0] if self.is_conv else 0

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) with the BatchNorm folded in: ``w * g`` and ``(b - mean) * g + beta`` where
        ``g = gamma / sqrt(running_var + eps)``; differentiable in the module's and the BatchNorm's parameters."""
        m = self.module
        w = m.weight
        b = m.bias if m.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
        if self.bn is not None:
            bn = self.bn
            gain = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                gain = gain * bn.weight
            shift = bn.bias if bn.bias is not None else torch.zeros_like(gain)
            w, b = w * gain.view(-1, *([1] * (w.dim() - 1))), (b - bn.running_mean) * gain + shift
        return self._spread(w), b

    def _spread(self, w: torch.Tensor) -> torch.Tensor:
        """The weights over the unpooled map when an average pool is folded in (each pooled weight repeated
        over its window, divided by the window size)."""
        if self.avg_input is None:
            return w
        kind, (c, h, wd) = self.avg_input
        if kind == "gap":
            return (w / (h * wd)).view(-1, c, 1, 1).expand(-1, c, h, wd).reshape(w.shape[0], -1)
        if self.is_conv:
            return w.repeat_interleave(2, 2).repeat_interleave(2, 3) / 4
        w4 = w.view(-1, c, h // 2, wd // 2).repeat_interleave(2, 2).repeat_interleave(2, 3) / 4
        return w4.reshape(w.shape[0], -1)


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _arg(node, index: int, name: str, default):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _function_name(fn) -> str:
    module = getattr(fn, "__module__", None) or "torch"
    if module.startswith("torch._C") or module == "torch.functional":
        module = "torch"
    module = module.lstrip("_")  # _operator.add -> operator.add
    return f"{module}.{getattr(fn, '__name__', repr(fn))}"


def describe(node, modules) -> str:
    """A node as a user knows it: ``BatchNorm2d 'body.1'``, ``function torch.sigmoid ('sigmoid')``,
    ``function operator.add ('add') in BasicBlock 'layer1'`` (the module whose forward() calls it)."""
    if node.op == "call_module":
        return f"{type(modules[node.target]).__name__} {node.target!r}"
    stack = node.meta.get("nn_module_stack") or {}
    inside = ""
    if stack:
        path, owner = list(stack.values())[-1]
        inside = f" in {getattr(owner, '__name__', owner)} {path!r}"
    if node.op == "call_function":
        return f"function {_function_name(node.target)} ({node.name!r}){inside}"
    if node.op == "call_method":
        return f"method .{node.target}() ({node.name!r}){inside}"
    return f"{node.op} {node.target!r}"


def refuse(what: str, problem: str, hint: str) -> QuantizationError:
    """The one shape of a refusal: what was found, why not, what is supported, and a hint."""
    return QuantizationError(f"{what}: {problem}; {SUPPORTED}; hint: {hint}")


def check_conv(name: str, m: nn.Conv2d) -> None:
    """Refuse a convolution the engine cannot run, naming every unsupported parameter."""
    problems = []
    if m.groups != 1:
        problems.append(f"groups={m.groups}")
    if _pair(m.dilation) != (1, 1):
        problems.append(f"dilation={m.dilation}")
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        problems.append(f"padding={m.padding!r} ({m.padding_mode})")
    elif len(set(_pair(m.padding))) != 1:
        problems.append(f"non-square padding {m.padding}")
    if len(set(_pair(m.stride))) != 1 or _pair(m.stride)[0] not in (1, 2):
        problems.append(f"stride={m.stride}")
    if max(m.kernel_size) > 7:
        problems.append(f"kernel {m.kernel_size} larger than 7")
    if problems:
        raise refuse(f"Conv2d {name!r}", f"unsupported conv ({', '.join(problems)})",
                     "use a dense 3x3/5x5 conv with stride 1 or 2 and padding k//2 or 0")


def _is_tensor(node) -> bool:
    return node.meta.get("type") is torch.Tensor or "tensor_meta" in node.meta


def _shape(node) -> tuple:
    return tuple(node.meta["tensor_meta"].shape)


def _relu_clamp(node, modules):
    """None if ``node`` is not a ReLU-like clamp, else the upper clamp (None for a plain ReLU) as ``(t,)``.
    Raises for a clamp whose lower bound is not 0."""
    if node.op == "call_module":
        m = modules[node.target]
        if type(m) is nn.ReLU:
            return (None,)
        if isinstance(m, nn.Hardtanh):  # nn.ReLU6 is a Hardtanh(0, 6)
            low, high = m.min_val, m.max_val
        else:
            return None
    elif node.op == "call_function" and node.target in _RELU_FUNCTIONS:
        return (None,)
    elif node.op == "call_method" and node.target in _RELU_METHODS:
        return (None,)
    elif node.op == "call_function" and node.target in (F.relu6,):
        low, high = 0.0, 6.0
    elif node.op == "call_function" and node.target in (F.hardtanh, F.hardtanh_):
        low, high = _arg(node, 1, "min_val", -1.0), _arg(node, 2, "max_val", 1.0)
    elif ((node.op == "call_function" and node.target in _CLAMP_FUNCTIONS)
          or (node.op == "call_method" and node.target in _CLAMP_METHODS)):
        low, high = _arg(node, 1, "min", None), _arg(node, 2, "max", None)
    else:
        return None
    if not (isinstance(low, (int, float)) and low == 0) or not (high is None or isinstance(high, (int, float))):
        raise refuse(f"{describe(node, modules)}", f"clamp to [{low}, {high}]: only a lower bound of 0 maps "
                     "onto the engine (ReLU, then int8 saturation at an output scale of t/127)",
                     "use nn.ReLU6, nn.Hardtanh(0, t) or torch.clamp(x, 0, t)")
    if high is not None and high <= 0:
        raise refuse(f"{describe(node, modules)}", f"clamp to [0, {high}] is constant", "remove it")
    return (float(high) if high is not None else None,)


def _pool_params(node, modules):
    """(kernel, stride, padding, dilation, ceil_mode) of a max-pool node, or None."""
    if node.op == "call_function" and node.target in (F.max_pool2d, torch.max_pool2d):
        kernel = _arg(node, 1, "kernel_size", None)
        stride = _arg(node, 2, "stride", None)
        return (kernel, stride if stride not in (None, []) else kernel, _arg(node, 3, "padding", 0),
                _arg(node, 4, "dilation", 1), _arg(node, 5, "ceil_mode", False))
    if node.op == "call_module" and isinstance(modules[node.target], nn.MaxPool2d):
        m = modules[node.target]
        return m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode
    return None


def _is_identity(node, modules) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _DROPOUTS + (nn.Identity,))
    if node.op == "call_function":
        return node.target in _IDENTITY_FUNCTIONS
    return node.op == "call_method" and node.target in _IDENTITY_METHODS


def _is_reshape(node, modules) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], (nn.Flatten, nn.Unflatten))
    if node.op == "call_function":
        return node.target in (torch.flatten, torch.reshape)
    return node.op == "call_method" and node.target in _FLATTEN_METHODS


def _is_avg_pool(node, modules) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _AVG_POOLS)
    if node.op == "call_function":
        return node.target in _AVG_FUNCTIONS or node.target is torch.mean
    return node.op == "call_method" and node.target == "mean"


def _avg_kind(node, modules, in_shape: tuple, out_shape: tuple) -> str | None:
    """``avg2`` (2x2, stride 2, no padding), ``gap`` (global) or None for any other average pool."""
    if len(in_shape) != 4:
        return None
    n, c, h, w = in_shape
    if node.op == "call_module" and isinstance(modules[node.target], nn.AvgPool2d):
        m = modules[node.target]
        if _pair(m.padding) != (0, 0) or m.ceil_mode or m.divisor_override is not None:
            return None
        kernel, stride = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
    elif node.op == "call_function" and node.target is F.avg_pool2d:
        kernel = _pair(_arg(node, 1, "kernel_size", None))
        stride = _pair(_arg(node, 2, "stride", None) or kernel)
        if (_pair(_arg(node, 3, "padding", 0)) != (0, 0) or _arg(node, 4, "ceil_mode", False)
                or _arg(node, 6, "divisor_override", None) is not None):
            return None
    elif node.op in ("call_method", "call_function") and node.target in ("mean", torch.mean):
        dims = _arg(node, 1, "dim", None)
        dims = {d % 4 for d in (dims if isinstance(dims, (tuple, list)) else [dims])} if dims is not None else None
        return "gap" if dims == {2, 3} and out_shape in ((n, c), (n, c, 1, 1)) else None
    else:  # adaptive: by its output size
        kernel = stride = (h // out_shape[2], w // out_shape[3]) if out_shape[2:] in ((1, 1), (h // 2, w // 2)) \
            else (0, 0)
    if kernel == stride == (h, w) and out_shape == (n, c, 1, 1):
        return "gap"
    if kernel == stride == (2, 2) and h % 2 == 0 and w % 2 == 0:
        return "avg2"
    return None


def trace(model: nn.Module, input_shape: tuple) -> torch.fx.GraphModule:
    """Symbolically trace ``model`` and annotate every node with the shape it has for a batch of 2."""
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as err:  # tracing failures come in many types
        raise refuse(f"{type(model).__name__}", f"torch.fx cannot trace it ({type(err).__name__}: {err})",
                     "forward() must not branch on tensor values; move such logic out of the model") from None
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(2, *input_shape))
    except Exception as err:
        cause = err.__cause__ or err  # ShapeProp wraps the model's own error in a long multi-line one
        first = str(cause).splitlines()[0] if str(cause) else ""
        raise QuantizationError(f"{type(model).__name__}: a zero input of shape {tuple(input_shape)} does not run "
                                f"through the model ({type(cause).__name__}: {first}); give the class an "
                                "input_shape attribute (C, H, W) or (features,)") from None
    return gm


def layer_plan(model: nn.Module, input_shape: tuple | None = None) -> list[PlanLayer]:
    """Trace ``model`` (in eval mode) into its conv/linear layers and what is fused into each.

    ``input_shape`` (one sample, no batch) defaults to ``model.input_shape``. Raises
    :class:`QuantizationError` for anything the engine cannot run, naming it.
    """
    input_shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if input_shape is None:
        raise QuantizationError(f"{type(model).__name__}: the input shape is unknown; give the class an "
                                "input_shape attribute (C, H, W) or (features,)")
    was_training = model.training
    model.eval()
    try:
        gm = trace(model, tuple(input_shape))
    finally:
        model.train(was_training)
    modules = dict(model.named_modules())
    plan: list[PlanLayer] = []
    # per traced node that holds an activation: (tensor, pending flatten, pending average pool, fusable) —
    # tensor 0 is the model input, k the output of plan[k - 1]; "fusable": the node is the layer's latest
    # form, so a BatchNorm/ReLU/pool reading it may still be folded into the layer
    state: dict = {}
    made_by: dict = {}   # tensor -> the conv/linear node that made it (a BatchNorm must read it directly)
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if state:
                raise refuse(f"input {node.name!r}", "a second model input", "give forward() one tensor argument")
            state[node] = (0, False, None, False)
            continue
        if node.op == "output":
            out = node.args[0]
            if out not in state or state[out][0] != len(plan) or state[out][1] or state[out][2]:
                raise refuse(f"output of {type(model).__name__}", "the model returns something other than its "
                             "last layer's output (a tuple, an earlier tensor, a flatten or a pool)",
                             "return one logits tensor from a Linear/conv layer")
            break
        if node.op == "get_attr":
            raise refuse(f"parameter {node.target!r}", "used outside a Conv2d/Linear/BatchNorm module",
                         "keep learned tensors inside nn.Conv2d / nn.Linear")
        if not _is_tensor(node):
            continue  # shape arithmetic (x.size(0), x.shape[1] * 4, ...): only feeds view/reshape arguments
        inputs = [a for a in node.all_input_nodes if _is_tensor(a)]
        what = describe(node, modules)
        if node.target in _ADD_TARGETS and node.op in ("call_function", "call_method"):
            state[node] = _add_layer(node, inputs, state, plan, what)
            continue
        if len(inputs) != 1 or inputs[0] not in state:
            raise refuse(what, "data flow the engine cannot run (a concatenation, a second input, an operation "
                         "on two tensors other than a residual add)", "combine tensors only with a + b")
        src = inputs[0]
        ref, pending_flatten, pending_avg, fusable = state[src]
        fusable = fusable and len(src.users) == 1   # fusing into a layer whose output is also read elsewhere
        in_shape = _shape(src)                      # would change what the other reader sees
        layer = plan[ref - 1] if ref else None
        if node.op == "call_module" and isinstance(modules[node.target], (nn.Conv2d, nn.Linear)):
            module = modules[node.target]
            if isinstance(module, nn.Conv2d):
                check_conv(node.target, module)
                if pending_avg is not None and (pending_avg[0] == "gap" or _pair(module.stride)[0] != 1
                                                or max(module.kernel_size) > 3):
                    raise refuse(what, f"a conv (kernel {module.kernel_size}, stride {module.stride}) after "
                                 f"{'a global' if pending_avg[0] == 'gap' else 'a 2x2'} average pool: only a stride-1 "
                                 "conv up to 3x3 after a 2x2 average pool folds (into a 2k x 2k conv, stride 2)",
                                 "use nn.MaxPool2d(2), or a conv with stride 2 instead of the pool")
            elif len(in_shape) != 2 and not pending_flatten:
                raise refuse(what, f"a Linear on a {len(in_shape) - 1}-D input {in_shape[1:]}",
                             "flatten first: torch.flatten(x, 1)")
            plan.append(PlanLayer(node.target, module, flatten_input=pending_flatten or (
                pending_avg is not None and not isinstance(module, nn.Conv2d)), avg_input=pending_avg,
                inputs=None if ref == len(plan) else (ref,)))
            made_by[len(plan)] = node
            state[node] = (len(plan), False, None, True)
            continue
        if node.op == "call_module" and isinstance(modules[node.target], (nn.BatchNorm1d, nn.BatchNorm2d)):
            bn = modules[node.target]
            if not fusable or made_by.get(ref) is not src or layer.bn is not None:
                raise refuse(what, "a BatchNorm not directly after a Conv2d/Linear cannot be folded",
                             "put the BatchNorm right after the conv/linear layer, before ReLU and pooling")
            if not bn.track_running_stats or bn.running_mean is None:
                raise refuse(what, "no running statistics (track_running_stats=False)",
                             "train with track_running_stats=True so eval statistics exist to fold")
            layer.bn = bn
        elif (clamp := _relu_clamp(node, modules)) is not None:
            if pending_avg is not None:  # relu(avg(x)) == avg(x) only when x is already >= 0
                if not layer.relu or clamp[0] is not None:
                    raise refuse(what, "an activation after an average pool of a layer "
                                 "without a ReLU before it does not fold", "apply the ReLU before the pool")
            elif layer is None or pending_flatten:
                raise refuse(what, "a ReLU/clamp with no conv/linear layer before it",
                             "apply activations after a conv/linear layer")
            elif not fusable:
                raise refuse(what, "a ReLU/clamp on a layer output that is also read without it",
                             "read the activated tensor everywhere, or give the branch its own layer")
            else:
                layer.relu = True
                if clamp[0] is not None:
                    layer.clamp = clamp[0] if layer.clamp is None else min(layer.clamp, clamp[0])
        elif (pool := _pool_params(node, modules)) is not None:
            kernel, stride, padding, dilation, ceil_mode = pool
            if (_pair(kernel) != (2, 2) or _pair(stride) != (2, 2) or _pair(padding) != (0, 0)
                    or _pair(dilation) != (1, 1) or ceil_mode):
                raise refuse(what, f"max-pool kernel {kernel}, stride {stride}, padding {padding}: only 2x2 "
                             "with stride 2 is supported", "use nn.MaxPool2d(2)")
            if layer is None or pending_flatten or pending_avg or layer.pool or not layer.is_conv or not fusable:
                raise refuse(what, "a max-pool must follow a conv layer, once",
                             "pool once after each conv (conv -> [BatchNorm] -> ReLU -> MaxPool2d(2))")
            layer.pool = True
        elif _is_reshape(node, modules):
            out_shape = _shape(node)
            if len(out_shape) > 2 and len(in_shape) == 2:
                raise refuse(what, f"unflattens {in_shape[1:]} to {out_shape[1:]}: the engine "
                             "runs every conv before the fc layers", "put every conv before the flatten")
            if len(out_shape) != 2 or out_shape[0] != in_shape[0]:
                raise refuse(what, f"reshapes {in_shape[1:]} to {out_shape} per batch of "
                             f"{in_shape[0]}, not to (batch, features)", "use torch.flatten(x, 1)")
            if len(in_shape) > 2:
                if layer is not None and not layer.is_conv and not layer.is_add:
                    raise refuse(what, "a flatten after an fc layer", "flatten once, before the first fc")
                pending_flatten = True
        elif _is_identity(node, modules):
            pass
        elif _is_avg_pool(node, modules):
            kind = _avg_kind(node, modules, in_shape, _shape(node))
            if kind is None:
                raise refuse(what, f"average pool of {in_shape[1:]} to {_shape(node)[1:]}: only 2x2 with stride 2 "
                             "(even height and width) or a global average pool fold", "use nn.AvgPool2d(2) or "
                             "nn.AdaptiveAvgPool2d(1)")
            if (layer is None or not (layer.is_conv or layer.is_add) or pending_flatten or pending_avg
                    or layer.pool):
                raise refuse(what, "an average pool must follow a conv layer (without a max-pool), once",
                             "pool once after a conv: conv -> [BatchNorm] -> ReLU -> AvgPool2d(2)")
            pending_avg = (kind, tuple(in_shape[1:]))
            if kind == "gap" and len(_shape(node)) == 2:
                pending_flatten = True  # x.mean((2, 3)) is already (batch, channels)
        else:
            raise refuse(what, "not an operation the engine runs", "replace it with a supported layer")
        state[node] = (ref, pending_flatten, pending_avg, fusable)
    if not any(not layer.is_add for layer in plan):
        raise refuse(type(model).__name__, "no Conv2d or Linear layer", "a network needs at least one layer")
    return plan


def _add_layer(node, inputs, state, plan, what) -> tuple:
    """The plan layer of a residual add ``node`` (appended to ``plan``); returns the node's state."""
    if len(inputs) != 2 or any(a not in state for a in inputs) or len(node.all_input_nodes) != 2:
        raise refuse(what, "an add of a tensor and a constant (or of more than two tensors)",
                     "add two activation tensors, a + b (a bias belongs in the conv/linear layer)")
    if node.kwargs.get("alpha", 1) != 1 or len(node.args) > 2:
        raise refuse(what, "an add with alpha", "scale in a layer instead: a + b")
    shapes = [_shape(a) for a in inputs]
    if shapes[0] != shapes[1] or len(shapes[0]) != 4:
        raise refuse(what, f"a residual add of tensors of different shapes {shapes[0][1:]} and {shapes[1][1:]} "
                     "(broadcasting) or of flat vectors", "add two conv maps of the same shape; a downsampling "
                     "shortcut is a 1x1 conv (stride 2) with BatchNorm")
    refs = []
    for a in inputs:
        ref, pending_flatten, pending_avg, _ = state[a]
        if pending_flatten or pending_avg:
            raise refuse(what, "an add of a flattened or average-pooled tensor", "add conv maps, then pool")
        refs.append(ref)
    if refs[0] == refs[1]:
        raise refuse(what, "a tensor added to itself", "scale it in the layer before instead (x + x = 2x)")
    # named for the module whose forward() adds ("layer1.add"); ascending references: the earlier tensor
    # first (the model input, if read, starts the activation buffer)
    stack = node.meta.get("nn_module_stack") or {}
    owner = list(stack.values())[-1][0] if stack else ""
    name = f"{owner}.add" if owner else "add"
    taken = {layer.name for layer in plan}
    name = next(n for n in [name] + [f"{name}{k}" for k in range(1, len(plan) + 2)] if n not in taken)
    plan.append(PlanLayer(name, None, inputs=tuple(sorted(refs))))
    return (len(plan), False, None, True)


def plan_forward(plan: list[PlanLayer], x: torch.Tensor, outputs: list | None = None,
                 weights: dict | None = None) -> torch.Tensor:
    """Run the plan in float (BatchNorm folded; optionally with substitute ``weights``, name -> (weight, bias));
    append each layer's output after its ReLU/clamp/pool to ``outputs``."""
    tensors = [x]
    for i, layer in enumerate(plan):
        refs = layer.inputs if layer.inputs is not None else (i,)
        if layer.is_add:
            y = tensors[refs[0]] + tensors[refs[1]]
        else:
            y = tensors[refs[0]]
            if layer.flatten_input:
                y = y.flatten(1)
            w, b = (weights or {}).get(layer.name) or layer.params()
            y = F.conv2d(y, w, b, stride=layer.stride, padding=layer.padding) if layer.is_conv else F.linear(y, w, b)
        y = apply_fused(layer, y)
        tensors.append(y)
        if outputs is not None:
            outputs.append(y)
    return tensors[-1]


def apply_fused(layer: PlanLayer, x: torch.Tensor) -> torch.Tensor:
    """The element-wise stages after a layer's conv/linear: 2x2 max-pool, ReLU, the upper clamp."""
    if layer.pool:
        x = F.max_pool2d(x, 2)
    if layer.relu:
        x = F.relu(x)
    if layer.clamp is not None:
        x = torch.clamp(x, max=layer.clamp)
    return x
