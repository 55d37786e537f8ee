"""Entry point: python -m services.werkbak."""

from services.werkbak.app import create_app
from services.werkbak.settings import WerkbakSettings
from shared.runner import serve

if __name__ == "__main__":
    settings = WerkbakSettings()
    serve(create_app(settings), settings)
