"""Conditional VAE detector (and the plain-autoencoder baseline), CPU-fast, seeded.

Method: Abdelli, Grießer, Neumeyr, Hohenleitner, Pachnicke, "Degradation prediction of semiconductor lasers
using conditional variational autoencoder", arXiv:2211.02847 (2022). A CVAE learns p(x | c) for healthy
devices, x = monitored trajectory window, c = operating conditions; a device whose window the model explains
badly (high reconstruction error, latent far from the prior) is predicted to degrade.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from realignkit.drift.detectors import ThresholdConfig, _require_rows, _ThresholdMixin

WEIGHTS_NAME = "detector.safetensors"
CONFIG_NAME = "detector.json"


class CVAEConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latent_dim: int = Field(2, ge=1)
    hidden: int = Field(64, ge=4)
    epochs: int = Field(150, ge=1)
    min_updates: int = Field(1500, ge=0)  # small fleets get more epochs so the optimizer still converges
    batch_size: int = Field(128, ge=1)
    lr: float = Field(3e-3, gt=0)
    beta: float = Field(1.0, ge=0)  # KL weight while training (β-VAE); 1 keeps q(z | x, c) close to N(0, I)
    # score = mean standardized squared error + w · latent term: a degrading unit is either reconstructed badly
    # or pushed far out in latent space, where healthy units of its condition never are. Latent term
    # "mahalanobis" (default): ½‖μ‖², the prior Mahalanobis distance of the posterior mean. "kl": the full
    # KL(q(z | x, c) ‖ N(0, I)) = ½(‖μ‖² + Σσ² − d − Σlog σ²), whose posterior-width part measures how certain
    # the encoder is (it varies with the condition's noise and from fit to fit), not how abnormal the unit is;
    # it shifted the healthy score level and made the MAD threshold miscalibrated across condition mixes.
    score_kl_weight: float = Field(1.0, ge=0)
    latent_score: Literal["mahalanobis", "kl"] = "mahalanobis"
    # which way the values move when a unit degrades ("increase": drive current; "decrease": refusal rate).
    # One-sided: the latent term of a unit that degrades *less* than the typical healthy unit of its operating
    # point (decoder mean at z = 0) is dropped, so "unusually good" is not flagged as failing.
    direction: Literal["both", "increase", "decrease"] = "both"
    seed: int = 0
    threshold: ThresholdConfig = ThresholdConfig()


def _torch():
    import torch

    return torch


def _build_nets(x_dim: int, c_dim: int, config: CVAEConfig, variational: bool):
    torch = _torch()
    nn = torch.nn
    h, z = config.hidden, config.latent_dim
    enc_in = x_dim + c_dim
    encoder = nn.Sequential(nn.Linear(enc_in, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU())
    heads = nn.Linear(h, 2 * z if variational else z)  # (μ, log σ²) for the VAE, the code for the plain AE
    # the VAE decoder outputs a mean and a log-variance per feature (a heteroscedastic Gaussian p(x | z, c)):
    # noise and unit spread grow with the stress level, so errors are judged against the spread for that c
    x_out = 2 * x_dim if variational else x_dim
    decoder = nn.Sequential(nn.Linear(z + c_dim, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, x_out))
    return nn.ModuleDict({"encoder": encoder, "heads": heads, "decoder": decoder})


class ConditionalVAE(_ThresholdMixin):
    """PyOD-style CVAE: `fit(X, C)` on healthy windows, `decision_function`, `predict`, `threshold_`.

    X: (n, n_features) resampled windows; C: (n, n_conditions) standardized operating point (+ horizon).
    """

    variational = True
    conditioned = True

    def __init__(self, config: CVAEConfig | None = None, **overrides) -> None:
        base = (config or CVAEConfig()).model_dump()
        base.update(overrides)
        self.config = CVAEConfig(**base)
        self.threshold_config = self.config.threshold
        self.nets_ = None
        self.threshold_ = float("nan")

    # --- model pieces ----------------------------------------------------------------------------------
    def _inputs(self, x, c):
        torch = _torch()
        x_t = torch.as_tensor(np.asarray(x, dtype=np.float32))
        c_t = torch.as_tensor(np.asarray(c, dtype=np.float32)).reshape(len(x_t), -1)
        if not self.conditioned:  # plain AE: conditions are just more input features, not a decoder input
            x_t = torch.cat([x_t, c_t], dim=1)
            c_t = c_t[:, :0]
        return x_t, c_t

    def _encode(self, x_t, c_t):
        torch = _torch()
        hidden = self.nets_["encoder"](torch.cat([x_t, c_t], dim=1))
        out = self.nets_["heads"](hidden)
        if not self.variational:
            return out, None
        mu, logvar = out.chunk(2, dim=1)  # (n, z) each
        return mu, logvar.clamp(-10.0, 10.0)

    def _decode(self, z, c_t):
        """(mean, log-variance) for the VAE; (reconstruction, None) for the plain AE."""
        torch = _torch()
        out = self.nets_["decoder"](torch.cat([z, c_t], dim=1))
        if not self.variational:
            return out, None
        mean, logvar = out.chunk(2, dim=1)  # (n, x_dim) each
        return mean, logvar.clamp(-9.0, 4.0)

    # --- PyOD API ------------------------------------------------------------------------------------------
    def fit(self, x, c, x_val=None, c_val=None) -> ConditionalVAE:
        _require_rows(x)
        torch = _torch()
        torch.manual_seed(self.config.seed)
        x_t, c_t = self._inputs(x, c)
        self.x_dim_, self.c_dim_ = x_t.shape[1], c_t.shape[1]
        self.nets_ = _build_nets(self.x_dim_, self.c_dim_, self.config, self.variational)
        self._train(x_t, c_t)
        self._set_threshold(x, c, x_val, c_val)
        return self

    def _train(self, x_t, c_t) -> None:
        torch = _torch()
        from tqdm.auto import tqdm

        cfg = self.config
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny MLPs: intra-op threading costs more than it saves (and CPUs are shared)
        try:
            self._train_loop(x_t, c_t, cfg, torch, tqdm)
        finally:
            torch.set_num_threads(threads)
        self.nets_.eval()

    def _train_loop(self, x_t, c_t, cfg, torch, tqdm) -> None:
        optimizer = torch.optim.Adam(self.nets_.parameters(), lr=cfg.lr)
        generator = torch.Generator().manual_seed(cfg.seed)
        n = len(x_t)
        batches = -(-n // cfg.batch_size)
        epochs = max(cfg.epochs, -(-cfg.min_updates // batches))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        self.nets_.train()
        for _ in tqdm(range(epochs), desc=type(self).__name__, leave=False, disable=n * epochs < 2e5):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, cfg.batch_size):
                batch = order[start : start + cfg.batch_size]
                loss = self._loss(x_t[batch], c_t[batch], generator)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            schedule.step()

    def _loss(self, x_b, c_b, generator):
        torch = _torch()
        mu, logvar = self._encode(x_b, c_b)
        if not self.variational:
            return ((self._decode(mu, c_b)[0] - x_b) ** 2).sum(dim=1).mean()
        eps = torch.randn(mu.shape, generator=generator)
        z = mu + eps * torch.exp(0.5 * logvar)  # reparameterization trick
        mean, out_logvar = self._decode(z, c_b)
        nll = 0.5 * (((mean - x_b) ** 2) * torch.exp(-out_logvar) + out_logvar).sum(dim=1)  # Gaussian −log p
        kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return (nll + self.config.beta * kl).mean()

    def decision_function(self, x, c) -> np.ndarray:
        """(n,) anomaly scores from the posterior mean: for the CVAE the mean squared standardized error
        ((x − mean) / σ)² (+ a latent term, see CVAEConfig.latent_score), for the plain AE the mean squared error."""
        torch = _torch()
        if self.nets_ is None:
            raise RuntimeError("call fit() or load() first")
        x_t, c_t = self._inputs(x, c)
        with torch.no_grad():
            mu, logvar = self._encode(x_t, c_t)
            recon, out_logvar = self._decode(mu, c_t)
            n_out = recon.shape[1]
            error = (recon - x_t[:, :n_out]) ** 2
            if out_logvar is not None:
                error = error * torch.exp(-out_logvar)
            score = error.mean(dim=1)
            if self.variational and self.config.score_kl_weight > 0:
                latent = self._latent_term(mu, logvar)  # (n,)
                score = score + self.config.score_kl_weight * latent * self._worse_than_typical(x_t, c_t)
        return score.numpy().astype(np.float64)

    def _latent_term(self, mu, logvar):
        """(n,) how far out the posterior of each unit lies: ½‖μ‖² ("mahalanobis") or the full KL ("kl")."""
        if self.config.latent_score == "kl":
            return 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return 0.5 * (mu**2).sum(dim=1)

    def _worse_than_typical(self, x_t, c_t):
        """(n,) 1.0 where a unit lies on the degrading side of the typical healthy unit of its condition."""
        torch = _torch()
        if self.config.direction == "both":
            return torch.ones(len(x_t))
        typical, _ = self._decode(torch.zeros(len(x_t), self.config.latent_dim), c_t)  # (n, x_dim)
        excess = (x_t[:, : typical.shape[1]] - typical).mean(dim=1)
        sign = 1.0 if self.config.direction == "increase" else -1.0
        return (sign * excess > 0).float()

    # --- persistence: safetensors weights + JSON config, never pickle ----------------------------------------
    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        state = {k: v.detach().contiguous() for k, v in self.nets_.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME))
        meta = {"class": type(self).__name__, "config": self.config.model_dump(), "x_dim": self.x_dim_,
                "c_dim": self.c_dim_, "threshold": self.threshold_}
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> ConditionalVAE:
        from safetensors.torch import load_file

        directory = Path(directory)
        meta = json.loads((directory / CONFIG_NAME).read_text())
        detector = cls(CVAEConfig(**meta["config"]))
        detector.x_dim_, detector.c_dim_ = meta["x_dim"], meta["c_dim"]
        detector.nets_ = _build_nets(detector.x_dim_, detector.c_dim_, detector.config, cls.variational)
        detector.nets_.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
        detector.nets_.eval()
        detector.threshold_ = float(meta["threshold"])
        return detector


class PlainAutoencoder(ConditionalVAE):
    """Baseline: a deterministic autoencoder with the same layers; conditions are plain input features."""

    variational = False
    conditioned = False
