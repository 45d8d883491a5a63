"""Layers as classes (the notebook's "Refactoring: layers as classes"): each keeps its input and output on
`__call__`, and `backward` writes the `.g` gradients; `Model` calls the layers, then the loss, and walks them back.

The notebook's `Model` took `w1, w2, b1, b2`; here it takes the params of any depth, and the layer classes, so
that the `Module` version (module.py) reuses it. The shift is `relu_shift`.
"""

from backprop_lab.core.names import RELU  # the lab's, as the line below, for `Net` at the bottom
from backprop_lab.impls.common import NotebookNet, activation_class, stack


class Relu:
    def __init__(self, shift=0.5):
        self.shift = shift

    def __call__(self, inp):
        self.inp = inp
        self.out = inp.clamp_min_(0.0) - self.shift
        return self.out

    def backward(self):
        self.inp.g = self.out.g * (self.inp > 0).float()


class Lin:
    def __init__(self, w, b):
        self.w = w
        self.b = b

    def __call__(self, inp):
        self.inp = inp
        self.out = self.inp @ self.w + self.b
        return self.out

    def backward(self):
        self.inp.g = self.out.g @ self.w.t()
        self.w.g = self.inp.t() @ self.out.g
        self.b.g = self.out.g.sum(0)


class Mse:
    def __call__(self, inp, trg):
        self.inp, self.trg = inp, trg
        self.out = (self.inp.squeeze() - self.trg).pow(2).sum() / self.inp.shape[0]
        return self.out

    def backward(self):
        self.inp.g = 2.0 * (self.inp.squeeze() - self.trg).unsqueeze(-1) / self.inp.shape[0]


class Model:
    def __init__(self, params, shift=0.5, lin=Lin, relu=Relu, loss=Mse):
        self.layers = stack(params, lin, lambda: relu(shift))
        self.loss = loss()

    def __call__(self, inp, out):
        for layer in self.layers:
            inp = layer(inp)
        return self.loss(inp, out)

    def backward(self):
        self.loss.backward()
        for layer in reversed(self.layers):
            layer.backward()


def Net(params, shift, activation=RELU):
    return NotebookNet(Model(params, shift, relu=activation_class(Relu, activation)), params)
