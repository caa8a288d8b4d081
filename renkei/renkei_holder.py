"""A benchmark holder on Renkei, in a module of its own: a bare holder imports no holder library."""

from __future__ import annotations

from holders.client import HolderClient
from holders.store import HolderStore
from renkei.exchanges import Exchange, staff


class RenkeiHolder:
    """A holder on Renkei: the holder library on the holder's own store."""

    def __init__(self, holder: str) -> None:
        self.client = HolderClient(holder, HolderStore.of(holder))

    async def start(self) -> None:
        await self.client.start()

    async def stop(self) -> None:
        await self.client.stop()
        self.client.store.close()

    async def round_trip(self, exchange: Exchange, own_number: str,
                         within: float) -> tuple[str, str]:
        request_id = await self.client.request(
            own_number, exchange.pattern, exchange.provider, exchange.data_type,
            exchange.purpose, *staff(exchange.requester))
        return request_id, (await self.client.outcome(request_id, within)).status
