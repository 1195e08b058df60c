"""The HTTP floor: Starlette on uvicorn answering every POST with a constant JSON body.

    uvicorn floor_app:app --http httptools --loop uvloop --workers 1 --port PORT

It reads the request body (as every model server must) and returns a fixed answer the size of
a one-row prediction; no parsing, no model. Whatever a model server does beyond this costs
throughput, so a server's share of the floor is how much of the raw HTTP capacity it keeps.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = (
    b'{"model":"credit","version":1,"ids":["00000000000000000000000000000000"],'
    b'"predictions":[0],"probabilities":[[0.7624,0.2376]],"classes":[0,1]}'
)


async def predict(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, media_type="application/json")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"])])
