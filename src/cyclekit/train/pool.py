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

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch the same shape as ``images`` mixing new and stored fakes."""
        if self.size == 0:
            return images
        images = images.detach()
        out = []
        for image in images:
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self._rand() > 0.5:
                idx = int(torch.randint(0, self.size, (), generator=self.generator))
                out.append(self.images[idx].clone())
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, dim=0)

    def state_dict(self) -> dict:
        images = torch.cat(self.images).cpu() if self.images else torch.empty(0)
        return {"size": self.size, "images": images, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.size = int(state["size"])
        images = state["images"]
        self.images = [img.unsqueeze(0).to(device) for img in images] if images.numel() else []
        self.generator.set_state(state["rng"])
