"""The seed's generation job: the example to copy when writing a handler.

``POST /api/generate/{model}`` queues a ``generation`` job; this handler walks it through the
generator statuses with progress and messages, then returns its result. The "model" is a
stand-in that sleeps: swap the sleeps for real work, keep the shape.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import msgspec

from jobqueue.models import JobStatus, Priority
from jobqueue.worker import JobContext, Registry

GENERATION_JOB_TYPE = "generation"
Model = Literal["musicgen-small", "musicgen-medium", "audiogen"]
#: Known models and their output sample rate.
MODELS: dict[Model, int] = {"musicgen-small": 32_000, "musicgen-medium": 32_000, "audiogen": 16_000}
DEFAULT_MODEL: Model = "musicgen-small"
#: Seconds of simulated work per second of requested audio (30 s of audio takes 1.5 s).
SECONDS_PER_AUDIO_SECOND = 0.05

registry = Registry()


Prompt = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
#: Seconds of audio to generate.
Duration = Annotated[float, msgspec.Meta(gt=0, le=300)]


class GenerateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/generate[/{model}]``."""

    prompt: Prompt
    duration: Duration = 10.0
    priority: Priority = 0


class GenerationData(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``request_data`` of a generation job, however it is queued (``POST /api/jobs`` too)."""

    model: Model
    prompt: Prompt
    duration: Duration = 10.0


@registry.handler(GENERATION_JOB_TYPE, request_data=GenerationData)
async def generate_audio(ctx: JobContext) -> dict[str, object]:
    model = ctx.request_data["model"]
    duration = float(ctx.request_data.get("duration", 10))
    step = duration * SECONDS_PER_AUDIO_SECOND / 10

    await ctx.set_status(JobStatus.LOADING_MODEL, f"loading {model}", progress=5)
    await asyncio.sleep(step)
    await ctx.set_status(JobStatus.PREPARING_PROMPT, "tokenizing the prompt", progress=15)
    await asyncio.sleep(step)
    await ctx.set_status(JobStatus.GENERATING_AUDIO, "generating audio", progress=20)
    for chunk in range(1, 8):
        await asyncio.sleep(step)
        await ctx.progress(20 + chunk * 10, f"generated {duration * chunk / 7:.1f}s of {duration:g}s")
    await ctx.set_status(JobStatus.EXPORTING, "writing the WAV file", progress=95)
    await asyncio.sleep(step)
    return {
        "model": model,
        "prompt": ctx.request_data["prompt"],
        "duration": duration,
        "sample_rate": MODELS.get(model, 32_000),
        # A placeholder: nothing is written and the service serves no files (see the README).
        "audio_url": f"/files/{ctx.job.id}.wav",
    }
