"""The notebook's first backward ("Gradient and backward pass"): plain functions, each storing the gradient as `.g`
on the tensor it belongs to, and `fwd_n_bwd`, the forward followed by the same steps reversed.

The notebook wrote `fwd_n_bwd` for its two layers (`lin1`, `a1`, `lin2`); here the layers are a loop, and the
forward and the backward are two functions so that each can be timed alone. The notebook's shift is `relu_shift`.
"""

from backprop_lab.impls.common import check_shapes, n_layers, take_g  # the lab's, for `Net` at the bottom


def lin(x, w, b):
    return x @ w + b


def relu(x, shift=0.5):
    return x.clamp_min(0.0) - shift


def mse(inp, trg):
    return ((inp.squeeze(-1) - trg).pow(2)).sum() / inp.shape[0]


def mse_grad(inp, trg):
    inp.g = (inp.squeeze(-1) - trg).unsqueeze(-1) * (2 / inp.shape[0])


def lin_grad(x, y, w, b):
    x.g = y.g @ w.t()
    w.g = x.t() @ y.g
    b.g = y.g.sum(0)


def relu_grad(inp, out):
    inp.g = out.g * (inp > 0).float()


def forward(inp, params, shift=0.5):
    """lin1 = lin(inp, w1, b1); a1 = relu(lin1); lin2 = lin(a1, w2, b2); ... : every layer's input and output."""
    inps, lins = [], []
    for i, (w, b) in enumerate(params):
        inps.append(inp if i == 0 else relu(lins[-1], shift))
        lins.append(lin(inps[-1], w, b))
    return inps, lins


def backward(inps, lins, params, trg):
    """mse_grad(lin2, trg); lin_grad(a1, lin2, w2, b2); relu_grad(lin1, a1); lin_grad(inp, lin1, w1, b1)"""
    mse_grad(lins[-1], trg)
    for i in reversed(range(len(params))):
        if i < len(params) - 1:
            relu_grad(lins[i], inps[i + 1])
        lin_grad(inps[i], lins[i], *params[i])


def fwd_n_bwd(inp, trg, params, shift=0.5):
    inps, lins = forward(inp, params, shift)
    loss = mse(lins[-1], trg)
    backward(inps, lins, params, trg)
    return loss


class Net:
    """The lab's handle (not the notebook's): `fwd_n_bwd` split in two, on the params the pipeline hands over."""

    def __init__(self, params, shift):
        self.params, self.shift = params, shift
        self.layers = [(params[f"w{i}"], params[f"b{i}"]) for i in range(1, n_layers(params) + 1)]

    def forward(self, x, trg):
        check_shapes(x, trg, self.params)
        self.x, self.trg = x, trg
        self.inps, self.lins = forward(x, self.layers, self.shift)
        return mse(self.lins[-1], trg)

    def backward(self):
        backward(self.inps, self.lins, self.layers, self.trg)
        return take_g(self.params, self.x)

    def node_grads(self):
        """After a backward: the gradient at each linear output and shifted ReLU output."""
        lins = {f"lin{i}": t.g for i, t in enumerate(self.lins, start=1)}
        return lins | {f"act{i}": t.g for i, t in enumerate(self.inps[1:], start=1)}
