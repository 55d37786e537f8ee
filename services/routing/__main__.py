"""Entry point: python -m services.routing."""

from services.routing.app import RoutingSettings, create_app
from shared.runner import serve

if __name__ == "__main__":
    settings = RoutingSettings()
    serve(create_app(settings), settings)
