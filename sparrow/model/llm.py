"""The LLM box: any transformers causal LM, its tokenizer with ``[SEG]``/``[BOX]``, hidden-state capture, greedy decoding.

- Random tiny models (``LLMSpec.path is None``) are Phi-3, LLaMA, Qwen2 or Qwen2.5-VL configurations of the spec's
  sizes, with the offline tokenizer of :mod:`sparrow.model.tokens`.
- Paper-size models are loaded from a local folder with ``from_pretrained(..., local_files_only=True)``: causal LMs
  through ``AutoModelForCausalLM``, Qwen2.5-VL through ``Qwen2_5_VLForConditionalGeneration`` (its vision tower is
  then the spatial encoder). ``[SEG]`` and ``[BOX]`` are added and the embeddings resized; the new rows keep the
  resize initialisation (``mean_resizing=False``, the transformers 4.41 behaviour of the released code).
- Hidden states are captured with forward hooks instead of ``output_hidden_states`` so that only one layer is kept:
  ``last`` is the output of the final norm (VideoGLaMM/GLUS ``hidden_states[-1]``), ``last_prenorm`` the output of the
  last decoder layer before the final norm (UniPixel's hook).
- LoRA targets are found as the released code finds them: every Linear whose name *contains* ``q_proj`` or ``v_proj``
  (so Phi-3's fused ``qkv_proj`` matches), excluding vision modules.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import nn

from sparrow.model.config import LLMSpec, VisionSpec
from sparrow.model.tokens import add_segmentation_tokens, build_word_tokenizer

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(_DTYPES)}") from None


def _tiny_config(spec: LLMSpec, vision: VisionSpec, tokenizer):
    from transformers import LlamaConfig, Phi3Config, Qwen2_5_VLConfig, Qwen2Config

    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if spec.kind == "phi3":
        return Phi3Config(**text)
    if spec.kind == "llama":
        return LlamaConfig(**text)
    if spec.kind == "qwen2":
        return Qwen2Config(**text)
    if spec.kind == "qwen2_5_vl":
        half = spec.hidden_size // spec.num_heads // 2
        section = [half - 2 * (half // 3), half // 3, half // 3]
        return Qwen2_5_VLConfig(
            text_config=dict(text, rope_scaling={"type": "mrope", "mrope_section": section}),
            vision_config=dict(
                depth=vision.num_layers,
                hidden_size=vision.hidden_size,
                intermediate_size=vision.intermediate_size,
                num_heads=vision.num_heads,
                out_hidden_size=spec.hidden_size,
                patch_size=vision.patch_size,
                spatial_merge_size=2,
                temporal_patch_size=2,
                window_size=4 * vision.patch_size,
                fullatt_block_indexes=[vision.num_layers - 1],
                in_channels=3,
            ),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    raise ValueError(f"unknown LLM kind {spec.kind!r}; choose phi3, llama, qwen2 or qwen2_5_vl")


def _model_class(config):
    from transformers import AutoModelForCausalLM, Qwen2_5_VLForConditionalGeneration

    if config.model_type == "qwen2_5_vl":
        return Qwen2_5_VLForConditionalGeneration
    return AutoModelForCausalLM


def _instantiate(config) -> nn.Module:
    """Random weights for ``config`` (the checkpoint or the caller fills them)."""
    klass = _model_class(config)
    return klass.from_config(config) if hasattr(klass, "from_config") else klass(config)


# What the released evaluation samples with: its export sets do_sample=True and nothing else, so transformers'
# GenerationConfig defaults apply (top-k 50, temperature 1).
SAMPLE_TOP_K = 50
SAMPLE_TEMPERATURE = 1.0


def choose_next(logits: torch.Tensor, generator: torch.Generator | None = None) -> int:
    """The next id from (V,) logits: the argmax, or with ``generator`` a top-k sample at the released settings."""
    if generator is None:
        return int(logits.float().argmax())
    top = logits.float().topk(min(SAMPLE_TOP_K, logits.numel()))
    probs = torch.softmax(top.values / SAMPLE_TEMPERATURE, dim=-1)
    return int(top.indices[torch.multinomial(probs, 1, generator=generator)])


class LanguageModel(nn.Module):
    """A transformers causal LM with hooks for one hidden layer."""

    def __init__(self, model: nn.Module, hidden_state: str = "last"):
        super().__init__()
        self.model = model
        self.hidden_state = hidden_state
        self._captured: torch.Tensor | None = None
        self._cache_name: str | None = None
        decoder = model.get_decoder()
        target = decoder.norm if hidden_state == "last" else decoder.layers[-1]
        target.register_forward_hook(self._capture)

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def build(cls, spec: LLMSpec, vision: VisionSpec, path: Path | None, hidden_state: str):
        """(LanguageModel, tokenizer): random tiny model when ``path`` is None, else loaded from the local folder."""
        if path is None:
            tokenizer = build_word_tokenizer(spec.extra_words)
            config = _tiny_config(spec, vision, tokenizer)
            return cls(_instantiate(config), hidden_state), tokenizer
        from transformers import AutoConfig, AutoTokenizer

        if not path.is_dir():
            raise FileNotFoundError(f"LLM folder not found: {path} (LLMSpec.path; nothing is downloaded)")
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        model = _model_class(config).from_pretrained(path, local_files_only=True, dtype=torch_dtype(spec.dtype))
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        add_segmentation_tokens(tokenizer)
        if len(tokenizer) != model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        return cls(model, hidden_state), tokenizer

    @classmethod
    def from_saved_config(cls, config_dir: Path, hidden_state: str, dtype: str):
        """The architecture described by a saved ``config.json`` (random weights; a checkpoint fills them)."""
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(config_dir, local_files_only=True)
        return cls(_instantiate(config).to(torch_dtype(dtype)), hidden_state)

    def save_config(self, directory: Path) -> None:
        self.model.config.save_pretrained(directory)

    # -- properties ------------------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def visual(self) -> nn.Module | None:
        """Qwen2.5-VL's vision tower (with its merger), or None."""
        inner = getattr(self.model, "model", None)
        return getattr(inner, "visual", None)

    def input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def output_embeddings(self) -> nn.Module:
        return self.model.get_output_embeddings()

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids.clamp(min=0))

    def lora_target_names(self, targets: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
        """Names (relative to ``self.model``) of Linear layers whose name contains a target substring."""
        names = []
        for name, module in self.model.named_modules():
            if not isinstance(module, nn.Linear) or "lm_head" in name:
                continue
            if any(x in name for x in exclude):
                continue
            if any(t in name.rsplit(".", 1)[-1] for t in targets):
                names.append(name)
        return names

    # -- forward ---------------------------------------------------------------------------------------------
    def _capture(self, module, args, output) -> None:
        self._captured = output[0] if isinstance(output, tuple) else output

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        past_key_values=None,
        use_cache: bool = False,
    ):
        """(logits, captured hidden states of the same positions, past_key_values)."""
        self._captured = None
        kwargs = {}
        if past_key_values is not None:
            kwargs[self._cache_kwarg()] = past_key_values
        out = self.model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=use_cache, return_dict=True, **kwargs
        )
        hidden = self._captured
        self._captured = None
        # Older releases name the output `past_key_values`; on 5.24 reading that name warns even when it is None.
        cache = out.cache if hasattr(type(out), "cache") or "cache" in out else getattr(out, "past_key_values", None)
        return out.logits, hidden, cache

    def _cache_kwarg(self) -> str:
        # transformers 5.24 renamed `past_key_values` to `cache` (the old name warns); accept both releases.
        # Looked up once: inspecting the signature on every decoding step costs as much as a tiny model's step.
        if self._cache_name is None:
            params = inspect.signature(self.model.forward).parameters
            self._cache_name = "cache" if "cache" in params else "past_key_values"
        return self._cache_name

    @torch.no_grad()
    def generate(
        self,
        inputs_embeds: torch.Tensor,
        max_new_tokens: int,
        stop_ids: set[int],
        forced: list[int] | None = None,
        sample_seed: int | None = None,
    ) -> tuple[list[int], torch.Tensor]:
        """Greedy decoding from a (1, L, D) prompt with the KV cache.

        Returns the new ids (stop id included) and the captured hidden states (1 + f, d) of the positions the
        decoding computed: the last prompt position, then each of the f fed answer tokens (every new id but a final
        stop id). ``forced``: ids to emit instead of the greedy choices (a scripted answer; same computation).
        ``sample_seed``: sample instead, as the released evaluation does (:func:`choose_next`), from a generator
        seeded with it, so a run is repeatable."""
        generator = None
        if sample_seed is not None:
            generator = torch.Generator(device=inputs_embeds.device).manual_seed(int(sample_seed))
        generated: list[int] = []
        mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        logits, hidden, past = self.forward(inputs_embeds, mask, use_cache=True)
        states = [hidden[0, -1:]]
        steps = max_new_tokens if forced is None else len(forced)
        for j in range(steps):
            next_id = choose_next(logits[0, -1], generator) if forced is None else int(forced[j])
            generated.append(next_id)
            if next_id in stop_ids:
                break
            step = self.embed(torch.tensor([[next_id]], device=inputs_embeds.device))
            mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)
            logits, hidden, past = self.forward(
                step.to(inputs_embeds.dtype), mask, past_key_values=past, use_cache=True
            )
            states.append(hidden[0])
        return generated, torch.cat(states)

    def generate_greedy(self, inputs_embeds: torch.Tensor, max_new_tokens: int, stop_ids: set[int]) -> list[int]:
        """The new ids of :meth:`generate`."""
        return self.generate(inputs_embeds, max_new_tokens, stop_ids)[0]
