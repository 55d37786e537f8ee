"""Entry point: python -m services.notify."""

from services.notify.app import create_app
from services.notify.settings import NotifySettings
from shared.runner import serve

if __name__ == "__main__":
    settings = NotifySettings()
    serve(create_app(settings), settings)
