"""The discriminative (metric-learning) loss of De Brabandere et al. (2017), plus foreground.

For instances ``k`` with mean embedding ``mu_k`` (background voxels, label 0, excluded):

- variance term: ``mean_k mean_{i in k} [||mu_k - x_i|| - delta_v]_+^2`` pulls each voxel
  to within ``delta_v`` of its instance's mean;
- distance term: ``mean_{k != l} [2 delta_d - ||mu_k - mu_l||]_+^2`` pushes the means of
  instances in the same image at least ``2 delta_d`` apart;
- regulariser: ``mean_k ||mu_k||`` keeps the embedding near the origin.

Each term is averaged over the instances of one image, then over the images of the batch
that have instances. Once the hinges are satisfied, two voxels of one instance are at most
``2 delta_v`` apart and voxels of different instances at least ``2 delta_d - 2 delta_v``, so
``delta_d`` lies midway between them: the natural threshold for grouping voxels.

A last output channel holds foreground logits, trained with binary cross-entropy against
``labels > 0``. Everything is vectorised (``index_add_`` over instance ids) and works for any
number of spatial axes and any batch size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import StitchsafeError

__all__ = ["DiscriminativeLoss", "LossTerms", "discriminative_terms"]


@dataclass(frozen=True)
class LossTerms:
    """The weighted total and its unweighted parts (0-d tensors)."""

    total: torch.Tensor
    variance: torch.Tensor
    distance: torch.Tensor
    regularization: torch.Tensor
    foreground: torch.Tensor

    def to_floats(self) -> dict[str, float]:
        """Plain floats for logs."""
        return {k: float(v.detach()) for k, v in self.__dict__.items()}


def _norm(v: torch.Tensor) -> torch.Tensor:
    # The plain norm has an infinite gradient at 0 (e.g. a one-voxel instance sits exactly
    # on its mean); clamping first gives a zero gradient there instead of NaN.
    return v.square().sum(-1).clamp_min(1e-12).sqrt()


@dataclass(frozen=True)
class _Instances:
    """The foreground voxels of a batch grouped by (image, instance), with each mean.

    Instances of different images never share an id, so they are never compared.
    """

    images: int  # N
    voxels: torch.Tensor  # (V_fg, E) embeddings of the foreground voxels
    inverse: torch.Tensor  # (V_fg,) instance of each foreground voxel
    image_of: torch.Tensor  # (K,) image of each instance
    count: torch.Tensor  # (K,) voxels per instance
    mean: torch.Tensor  # (K, E)

    @classmethod
    def of(cls, embeddings: torch.Tensor, labels: torch.Tensor) -> _Instances | None:
        """Group ``(N, E, *spatial)`` embeddings by ``(N, *spatial)`` ids; ``None`` if none."""
        n, e = embeddings.shape[:2]
        dev, dtype = embeddings.device, embeddings.dtype
        x = embeddings.reshape(n, e, -1).transpose(1, 2).reshape(-1, e)  # (N * V, E)
        lab = labels.reshape(n, -1).long()
        fg = lab.reshape(-1) > 0
        if not bool(fg.any()):
            return None
        # One id per (image, instance): instances of different images never mix.
        image_of_voxel = torch.arange(n, device=dev).repeat_interleave(lab.shape[1])
        stride = int(lab.max()) + 1
        keys, inverse = torch.unique(
            (image_of_voxel * stride + lab.reshape(-1))[fg], return_inverse=True
        )
        k = keys.numel()
        xf = x[fg]
        count = torch.zeros(k, device=dev, dtype=dtype).index_add_(
            0, inverse, torch.ones_like(inverse, dtype=dtype)
        )
        mean = torch.zeros(k, e, device=dev, dtype=dtype).index_add_(0, inverse, xf)
        return cls(n, xf, inverse, keys // stride, count, mean / count[:, None])

    def zeros(self, size: int) -> torch.Tensor:
        return torch.zeros(size, device=self.mean.device, dtype=self.mean.dtype)

    def per_image_mean(self, values: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """Mean over each image's terms, then over the images that have instances.

        An image with one instance has no pairs and contributes a distance term of 0.
        """
        images = self.zeros(self.images).index_add_(0, self.image_of, torch.ones_like(self.count))
        sums = self.zeros(self.images).index_add_(0, owner, values)
        counts = self.zeros(self.images).index_add_(0, owner, torch.ones_like(values))
        return (sums / counts.clamp_min(1))[images > 0].mean()


def discriminative_terms(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    delta_v: float = 0.5,
    delta_d: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Variance, distance and regularisation terms (unweighted).

    Parameters
    ----------
    embeddings
        ``(N, E, *spatial)`` float tensor.
    labels
        ``(N, *spatial)`` integer instance ids; 0 is background and is ignored.
    delta_v, delta_d
        Pull and push margins.

    Returns
    -------
    variance, distance, regularization
        0-d tensors; 0 (still attached to the graph) when no image has an instance.

    Examples
    --------
    Two instances whose voxels sit on their means, 4 apart (``> 2 * delta_d``); the
    regulariser is the mean norm of the means, (0 + 4) / 2:

    >>> emb = torch.tensor([[[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 0.0, 0.0]]])
    >>> lab = torch.tensor([[1, 1, 2, 0]])
    >>> [round(float(t), 4) for t in discriminative_terms(emb, lab)]
    [0.0, 0.0, 2.0]
    """
    _check_shapes(embeddings, labels)
    inst = _Instances.of(embeddings, labels)
    if inst is None:
        zero = embeddings.sum() * 0.0
        return zero, zero, zero
    # Built in this order (variance, regulariser, distance) so that backward sums the
    # gradients in the same order as ever: bit-identical training.
    variance = _variance(inst, delta_v)
    regularization = _regularization(inst)
    distance = _distance(inst, delta_d)
    return variance, distance, regularization


def _check_shapes(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    if embeddings.dim() != labels.dim() + 1 or (
        embeddings.shape[:1] + embeddings.shape[2:] != labels.shape
    ):
        raise StitchsafeError(
            f"embeddings {tuple(embeddings.shape)} and labels {tuple(labels.shape)} do not "
            "match: expected (N, E, *spatial) and (N, *spatial)."
        )


def _variance(inst: _Instances, delta_v: float) -> torch.Tensor:
    """Pull each voxel to within ``delta_v`` of its instance's mean."""
    pull = (_norm(inst.voxels - inst.mean[inst.inverse]) - delta_v).clamp_min(0).square()
    var_k = inst.zeros(len(inst.count)).index_add_(0, inst.inverse, pull) / inst.count
    return inst.per_image_mean(var_k, inst.image_of)


def _distance(inst: _Instances, delta_d: float) -> torch.Tensor:
    """Push the means of instances of one image at least ``2 * delta_d`` apart."""
    k = len(inst.count)
    a, b = torch.triu_indices(k, k, offset=1, device=inst.mean.device)
    same = inst.image_of[a] == inst.image_of[b]
    a, b = a[same], b[same]
    push = (2 * delta_d - _norm(inst.mean[a] - inst.mean[b])).clamp_min(0).square()
    return inst.per_image_mean(push, inst.image_of[a])


def _regularization(inst: _Instances) -> torch.Tensor:
    """Keep the means near the origin."""
    return inst.per_image_mean(_norm(inst.mean), inst.image_of)


@dataclass(frozen=True)
class DiscriminativeLoss:
    """Discriminative loss on channels ``[:-1]`` plus BCE on the foreground channel ``[-1]``.

    Defaults are the margins and weights of De Brabandere et al. (2017).

    Examples
    --------
    >>> loss = DiscriminativeLoss()
    >>> out = torch.zeros(2, 3, 5, 6, requires_grad=True)
    >>> lab = torch.zeros(2, 5, 6, dtype=torch.long); lab[:, :2] = 1; lab[1, 3:] = 2
    >>> terms = loss(out, lab)
    >>> terms.total.backward(); out.grad is not None
    True
    >>> loss.to_dict()["name"], loss.to_dict()["delta_d"]
    ('discriminative', 1.5)
    """

    delta_v: float = 0.5
    delta_d: float = 1.5
    alpha: float = 1.0  # variance weight
    beta: float = 1.0  # distance weight
    gamma: float = 0.001  # regulariser weight
    foreground_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.delta_v < self.delta_d:
            raise StitchsafeError(
                f"loss margins need 0 < delta_v < delta_d, got delta_v={self.delta_v}, "
                f"delta_d={self.delta_d}."
            )

    def __call__(
        self, output: torch.Tensor, labels: torch.Tensor, foreground: torch.Tensor | None = None
    ) -> LossTerms:
        """``output`` is ``(N, E + 1, *spatial)``: E embedding channels, then foreground logits.

        ``foreground`` is the BCE target, ``(N, *spatial)``; default ``labels > 0``.
        """
        if output.shape[1] < 2:
            raise StitchsafeError(
                f"the output has {output.shape[1]} channel(s); the loss needs at least one "
                "embedding channel and one foreground channel."
            )
        var, dist, reg = discriminative_terms(
            output[:, :-1], labels, delta_v=self.delta_v, delta_d=self.delta_d
        )
        target = labels > 0 if foreground is None else foreground
        fg = F.binary_cross_entropy_with_logits(output[:, -1], target.to(output.dtype))
        total = self.alpha * var + self.beta * dist + self.gamma * reg + self.foreground_weight * fg
        return LossTerms(total, var, dist, reg, fg)

    def to_dict(self) -> dict[str, Any]:
        """The ``"loss"`` entry of the model metadata."""
        return {"name": "discriminative", **asdict(self)}
