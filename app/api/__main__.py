"""python -m api [--host H] [--port N]: serve the API (the same app as uvicorn api.main:app)."""

from __future__ import annotations

from api.web import listen_parser, serve

DEFAULT_PORT = 8000


def main(argv: list[str] | None = None) -> None:
    args = listen_parser("Serve the Orchestra API.", "API_PORT", DEFAULT_PORT).parse_args(argv)
    serve("api.main:app", args.host, args.port)


if __name__ == "__main__":
    main()
