"""The distilled student (reverie.models.student) as an LLM backend, named "student".

It is a transformers llama model with the teacher's tokenizer and chat template, so everything
LocalLLM does (batches, streaming, stop strings, choices, JSON mode) it does the same way; only
where the weights come from differs: the home's models/student/ folder that `reverie train
student` writes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from reverie.config import offline_hub
from reverie.home import Home
from reverie.llm.base import BackendUnavailable
from reverie.llm.local import LocalLLM

if TYPE_CHECKING:
    from reverie.config import Settings

log = logging.getLogger(__name__)


class StudentLLM(LocalLLM):
    """The student LLM of a home; loads on first use, so building one is free."""

    name = "student"

    def __init__(self, student_dir: str | Path):
        """`student_dir`: a student folder as `train_student` saves it (Home(home).student)."""
        super().__init__(None)
        self.student_dir = Path(student_dir)

    @classmethod
    def from_settings(cls, settings: Settings) -> StudentLLM:
        return cls(Home(settings.home).student)

    def _load(self) -> None:
        if not (self.student_dir / "config.json").is_file():
            raise BackendUnavailable(f"no student in HOME ({self.student_dir}): reverie train student")
        offline_hub()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(str(self.student_dir))
        model = AutoModelForCausalLM.from_pretrained(str(self.student_dir)).float().eval()
        self._tokenizer = tokenizer
        self._model = model  # last: a set _model is what tells other threads loading is done
        self.loaded_from = "student"
        self.load_seconds = time.perf_counter() - started
        log.info("student LLM loaded from %s in %.1f s", self.student_dir, self.load_seconds)
