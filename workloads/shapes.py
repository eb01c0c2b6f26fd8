"""Transformer model shapes (the numbers a cost model needs; no weights)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """Decoder-only transformer dimensions.

    ``gated_mlp`` selects a SwiGLU block (gate, up, down: three d x ffn matrices, as in Llama)
    instead of a two-matrix MLP (fc1, fc2, as in OPT).
    """

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    gated_mlp: bool
    vocab: int
    tied_embeddings: bool = False

    def __post_init__(self) -> None:
        for key in ("hidden", "layers", "heads", "kv_heads", "head_dim", "ffn", "vocab"):
            if getattr(self, key) <= 0:
                raise ValueError(f"model.{key} must be a positive integer, got {getattr(self, key)}")
        if self.heads % self.kv_heads:
            raise ValueError(
                f"model.heads ({self.heads}) must be a multiple of model.kv_heads ({self.kv_heads})"
            )

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def queries_per_kv_head(self) -> int:
        return self.heads // self.kv_heads

    def linear_params_per_layer(self) -> int:
        """Weights of the linear layers in one block (biases and norms excluded)."""
        attn = self.hidden * self.q_dim + 2 * self.hidden * self.kv_dim + self.q_dim * self.hidden
        mlp = (3 if self.gated_mlp else 2) * self.hidden * self.ffn
        return attn + mlp

    def non_embedding_linear_params(self) -> int:
        """All block linear weights: the parameters that every token multiplies once."""
        return self.layers * self.linear_params_per_layer()
