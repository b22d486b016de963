"""Process-wide tuning shared by the services."""

import gc


def freeze_startup_objects() -> None:
    """Leave what the process made while starting out of every later garbage collection.

    Modules, FastAPI's routes and Pydantic's validators are hundreds of thousands of objects
    that live as long as the process. Each full collection walked them all: one took 190 ms in
    the middle of the query API's requests (measured with `gc.callbacks` under load), which was
    its p99. Call once, when the service is ready to serve.
    """
    gc.collect()
    gc.freeze()
