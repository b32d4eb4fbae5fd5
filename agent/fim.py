"""Fill-in-the-middle prompt templates of the code model families: the one table.

Typeahead splits raw FIM prompts (Continue, Twinny) at these markers; upstreams
that take no `suffix` (OpenAI-compatible servers such as vLLM or LM Studio) get
the prompt built from them. A model is matched by its name, as servers report
names (`qwen2.5-coder:1.5b`, `qwen2.5-coder-1.5b-instruct`, a GGUF file path).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FimTemplate:
    family: str
    names: tuple[str, ...]  # substrings of a lower-cased model name that select this family
    prefix: str  # marker before the code above the cursor
    suffix: str  # marker before the code below the cursor
    middle: str  # marker after which the model writes ("" when the prefix comes last)
    suffix_first: bool = False  # Codestral: [SUFFIX]...[PREFIX]...

    def render(self, prefix: str, suffix: str) -> str:
        """The raw prompt that asks this family for the code between prefix and suffix."""
        if self.suffix_first:
            return f"{self.suffix}{suffix}{self.prefix}{prefix}{self.middle}"
        return f"{self.prefix}{prefix}{self.suffix}{suffix}{self.middle}"


TEMPLATES: tuple[FimTemplate, ...] = (
    FimTemplate(
        "qwen",
        ("qwen2.5-coder", "qwen2.5coder", "qwen-2.5-coder", "qwen2.5_coder", "qwen3-coder", "qwen-coder"),
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
    ),
    FimTemplate("codegemma", ("codegemma",), "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    FimTemplate("starcoder", ("starcoder",), "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    FimTemplate("codellama", ("codellama", "code-llama", "code_llama"), "<PRE> ", " <SUF>", " <MID>"),
    FimTemplate(
        "deepseek",
        ("deepseek-coder", "deepseek_coder", "deepseekcoder"),
        "<｜fim▁begin｜>",
        "<｜fim▁hole｜>",
        "<｜fim▁end｜>",
    ),
    FimTemplate("codestral", ("codestral",), "[PREFIX]", "[SUFFIX]", "", suffix_first=True),
)


def template_for(model: str) -> FimTemplate | None:
    """The FIM template of a model, by its name; None for a model of no known code family."""
    name = model.lower()
    for t in TEMPLATES:
        if any(n in name for n in t.names):
            return t
    return None


def marker_sets() -> tuple[tuple[str, str, str, str], ...]:
    """(families, prefix, suffix, middle) per distinct set of markers, in table order."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for t in TEMPLATES:
        out.setdefault((t.prefix, t.suffix, t.middle), []).append(t.family)
    return tuple(("/".join(fams), pm, sm, mm) for (pm, sm, mm), fams in out.items())
