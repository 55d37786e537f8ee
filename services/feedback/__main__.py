"""Entry point: python -m services.feedback."""

from services.feedback.app import create_app
from services.feedback.settings import FeedbackSettings
from shared.runner import serve

if __name__ == "__main__":
    settings = FeedbackSettings()
    serve(create_app(settings), settings)
