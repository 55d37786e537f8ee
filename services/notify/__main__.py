"""Entry point: python -m services.notify."""

from services.notify.app import create_app
from shared.runner import serve
from shared.settings import Settings

if __name__ == "__main__":
    settings = Settings()
    serve(create_app(settings), settings)
