"""Thin FastAPI routers: parse, call one service function, answer."""
