"""The event stream over real HTTP: frames, ids, heartbeats, errors, isolation."""

from __future__ import annotations

import json
from uuid import uuid4

import httpx

from eventbus import EventBus
from eventbus_sse import Broadcaster, SignedTokenAuth
from tests.plugins.sse.conftest import Serve
from tests.plugins.sse.helpers import balance, clients_become, frames, holdings, networth, take


class TestFrames:
    """What a client receives on a healthy stream."""

    async def test_retry_first_then_frames_with_ids_names_and_codec_data(
        self,
        bus: EventBus,
        broadcaster: Broadcaster,
        auth: SignedTokenAuth,
        serve: Serve,
        client: httpx.AsyncClient,
    ) -> None:
        """The first frame is retry:, then one frame per event with id, event name and codec JSON."""
        url = await serve(broadcaster.asgi_app(authenticate=auth, retry_ms=1234), broadcaster)
        user = uuid4()
        headers = {"Authorization": f"Bearer {auth.issue(user)}"}
        async with client.stream("GET", url + "/", headers=headers) as response:
            assert response.status_code == 200
            stream = frames(response)
            first = (await take(stream, 1, events_only=False))[0]
            assert first.retry == 1234
            assert first.event is None
            await clients_become(broadcaster, 1)
            sent = [balance(user, "10.50"), holdings(user), networth(user, "10.50")]
            for event in sent:
                bus.publish_sync(event)
            got = await take(stream, 3)
        assert [f.event for f in got] == [
            "portfolio.balance.updated",
            "portfolio.holdings.updated",
            "portfolio.networth.updated",
        ]
        ids = [f.id for f in got]
        assert all(i and i.startswith(broadcaster.epoch + "-") for i in ids)
        seqs = [int(i.rsplit("-", 1)[1]) for i in ids if i]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 3
        payload = json.loads(got[0].data or "")
        assert payload["type"] == "portfolio.balance.updated"
        assert payload["event_id"] == str(sent[0].event_id)
        assert payload["data"]["new_balance"] == "10.50"
