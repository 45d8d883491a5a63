"""A `Module` base (the notebook's "Module.forward()"), so that each layer writes only its maths, `forward` and
`bwd`; `Lin.bwd` as in its cell "without einsum".

The shift is `relu_shift`.
"""

from backprop_lab.core.names import RELU  # the lab's, as the line below, for `Net` at the bottom
from backprop_lab.impls import layers
from backprop_lab.impls.common import NotebookNet, activation_class


class Module:
    def __call__(self, *args):
        self.args = args
        self.out = self.forward(*args)
        return self.out

    def forward(self):
        raise Exception("Not implemented")

    def backward(self):
        self.bwd(self.out, *self.args)


class Relu(Module):
    def __init__(self, shift=0.5):
        self.shift = shift

    def forward(self, inp):
        return inp.clamp_min_(0.0) - self.shift

    def bwd(self, out, inp):
        inp.g = (inp > 0).float() * out.g


class Lin(Module):
    def __init__(self, w, b):
        self.w, self.b = w, b

    def forward(self, inp):
        return inp @ self.w + self.b

    def bwd(self, out, inp):
        inp.g = out.g @ self.w.t()
        self.w.g = inp.t() @ out.g
        self.b.g = out.g.sum(0)


class Mse(Module):
    def forward(self, inp, trg):
        return (inp.squeeze() - trg).pow(2).sum() / inp.shape[0]

    def bwd(self, out, inp, trg):
        inp.g = 2.0 * (inp.squeeze() - trg).unsqueeze(-1) / inp.shape[0]


def Model(params, shift=0.5, lin=Lin, relu=Relu):
    """The notebook writes `Model` again here, line for line as in "layers as classes": it is that one."""
    return layers.Model(params, shift, lin=lin, relu=relu, loss=Mse)


def Net(params, shift, activation=RELU):
    return NotebookNet(Model(params, shift, relu=activation_class(Relu, activation)), params)
