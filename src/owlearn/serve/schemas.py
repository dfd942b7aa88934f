"""Request and response bodies of the service, as they appear in its OpenAPI schema (/docs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from owlearn.class_names import MAX_CLASS_NAME


class DrawingRequest(BaseModel):
    image: str = Field(..., description="A PNG data URL (data:image/png;base64,...) of the drawing.")


class TeachRequest(BaseModel):
    # the bound only keeps huge bodies out: the rules, the 64 characters after trimming among them, are
    # owlearn.class_names', which answers with a message that says which one a name breaks
    name: str = Field(..., min_length=1, max_length=4 * MAX_CLASS_NAME,
                      description=f"Name of the new class: not blank, at most {MAX_CLASS_NAME} characters, not "
                                  "'unknown', no slashes or invisible characters, not a class the model knows.")
    images: list[str] = Field(..., min_length=2, description="Data URLs of example images (drawings or photos).")
    drawings: bool = Field(True, description="The examples are drawings on the page's canvas.")


class Problem(BaseModel):
    detail: str = Field(..., description="What was wrong with the request, in words.")


class ClassProbability(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(..., alias="class", description="A class the model knows.")
    probability: float


class PredictionResponse(BaseModel):
    answer: str = Field(..., description="The recognised class, or 'unknown' when the image is refused.")
    known: bool = Field(..., description="False when the model refuses the image as unlike anything it knows.")
    nearest: str = Field(..., description="The most probable known class, refused or not.")
    confidence: float = Field(..., description="Probability of the most probable class.")
    top: list[ClassProbability] = Field(..., description="The most probable classes, best first.")
    novelty_score: float | None = Field(None, description="Higher = more like the training data (with a detector).")
    threshold: float | None = Field(None, description="Images of the nearest class scoring below this are refused.")


class HealthResponse(BaseModel):
    status: str
    version: str
    classes: int
    predictions: int = Field(..., description="Predictions answered since the start.")
    batches: int = Field(..., description="Forward passes that answered them (concurrent requests share one).")


class ModelResponse(BaseModel):
    classes: list[str]
    input_shape: list[int]
    can_refuse: bool = Field(..., description="The model has an outlier detector and refuses the unknown.")
    can_learn: bool = Field(..., description="The model has a Gaussian classifier and can be taught classes.")
    rejection: dict | None = Field(None, description="How the detector was fitted and calibrated.")
    added_classes: list[dict] = Field(default_factory=list, description="Classes taught after training.")


class TaughtResponse(BaseModel):
    added: str
    examples: int
    classes: list[str]
    seconds: float


class ForgottenResponse(BaseModel):
    removed: str
    classes: list[str]


def problems(*codes: int) -> dict:
    """OpenAPI ``responses`` entries for the given error status codes."""
    words = {400: "Malformed input", 401: "Missing or wrong token", 404: "No such class",
             409: "Conflicts with the model", 413: "Too large", 415: "Not an image type", 422: "Malformed request",
             429: "Too many requests", 503: "Overloaded or shutting down"}
    return {code: {"model": Problem, "description": words.get(code, "Error")} for code in codes}
