"""History of generated images (Shrivastava et al. 2017), as used by CycleGAN (section 4).

The discriminators are updated with a mix of the latest fakes and fakes from earlier
iterations, which reduces oscillation. With a full pool, each incoming image is returned as is
with probability 1/2; otherwise a random stored image is returned and replaced by the new one.

The pool owns its random generator so that its whole state (images and RNG) can be saved in a
training checkpoint and restored for an exact resume.
"""
from __future__ import annotations

import torch


class ImagePool:
    def __init__(self, size: int = 50, seed: int = 0) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def draw(self) -> tuple[int, bool, bool]:
        """Decide the fate of one incoming image: ``(slot, use_old, store)``.

        ``use_old``: return the image stored in ``slot`` instead of the new one; ``store``: put the
        new image in ``slot`` (``slot == len(self)`` appends). The only place the pool's random
        numbers are drawn, so :meth:`query` and the CUDA-graph pool make the same choices.
        """
        k = len(self.images)
        if k < self.size:  # filling up: keep the new image, return it
            return k, False, True
        if float(torch.rand((), generator=self.generator)) > 0.5:  # return a stored one, keep the new one
            return int(torch.randint(0, self.size, (), generator=self.generator)), True, True
        return 0, False, False  # return the new image, keep the pool as it is

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch the same shape as ``images`` mixing new and stored fakes."""
        if self.size == 0:
            return images
        images = images.detach()
        if self.images and self.images[0].shape[1:] != images.shape[1:]:
            self.images.clear()  # fakes of another size (--half-res-warmup's switch): start afresh
        out = []
        for image in images:
            image = image.unsqueeze(0)
            slot, use_old, store = self.draw()
            out.append(self.images[slot].clone() if use_old else image)
            if store:
                if slot == len(self.images):
                    self.images.append(image.clone())
                else:
                    self.images[slot] = image.clone()
        return torch.cat(out, dim=0)

    def state_dict(self) -> dict:
        images = torch.cat(self.images).cpu() if self.images else torch.empty(0)
        return {"size": self.size, "images": images, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.size = int(state["size"])
        images = state["images"]
        self.images = [img.unsqueeze(0).to(device) for img in images] if images.numel() else []
        self.generator.set_state(state["rng"])
