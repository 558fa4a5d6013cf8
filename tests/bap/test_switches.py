import pytest
import torch

from bap import SwitchedConv2d, binarize


def test_binarize_forward_is_exactly_binary_and_gradient_is_identity():
    scores = torch.tensor([-1.0, 0.004, 0.006, 2.0, 0.005], requires_grad=True)
    s = binarize(scores, threshold=0.005)
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]
    (s * torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])).sum().backward()
    assert scores.grad.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize("form", ["activation", "kernel"])
def test_both_forms_compute_the_same_function_and_switch_gradient(form):
    torch.manual_seed(0)
    conv = SwitchedConv2d(6, 5, num_domains=2, form=form)
    reference = SwitchedConv2d(6, 5, num_domains=2, form="activation")
    reference.load_state_dict(conv.state_dict())
    with torch.no_grad():
        for c in (conv, reference):
            c.scores[1] = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, 1.0])
    x = torch.randn(2, 6, 8, 8)
    y, y_ref = conv(x, 1), reference(x, 1)
    torch.testing.assert_close(y, y_ref)
    expected = torch.nn.functional.conv2d(x[:, [0, 2, 4, 5]], conv.weight[:, [0, 2, 4, 5]], padding=1)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    y.square().sum().backward()
    y_ref.square().sum().backward()
    assert conv.scores.grad[1].abs().sum() > 0 and conv.scores.grad[1].ne(0).all()  # off switches get gradient too
    assert conv.scores.grad[0].eq(0).all()  # the other domain is untouched
    torch.testing.assert_close(conv.scores.grad, reference.scores.grad, atol=1e-4, rtol=1e-4)
    assert conv.weight.grad is None  # the shared kernel is frozen by default


def test_bad_form():
    with pytest.raises(ValueError, match="auto.*activation.*kernel"):
        SwitchedConv2d(3, 3, 1, form="mask")
