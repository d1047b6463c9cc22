"""@cache.local is reference caching: the object itself, by identity."""

import threading

from cachekit import cache


class Client:
    """Not storable by the codec: a connection-like object."""

    def __init__(self, url):
        self.url = url
        self.lock = threading.Lock()


def test_local_returns_the_same_object_for_any_type():
    made = []

    @cache.local()
    def client(url):
        c = Client(url)
        made.append(c)
        return c

    a = client("redis://x")
    assert client("redis://x") is a
    assert client("redis://y") is not a
    assert len(made) == 2
    assert client.cache_stats()["store_errors"] == 0


def test_local_mutable_results_are_shared_not_copied():
    @cache.local
    def config():
        return {"items": [1]}

    first = config()
    first["items"].append(2)
    assert config() is first and config()["items"] == [1, 2]


def test_local_entries_are_charged_and_bounded():
    @cache.local(l1_max_entries=3)
    def make(i):
        return Client(str(i))

    for i in range(10):
        make(i)
    stats = make.cache_stats()
    assert stats["entries"] == 3 and stats["bytes"] > 0


def test_local_keeps_results_alive_until_evicted_or_cleared():
    import weakref

    @cache.local
    def make(i):
        return Client(str(i))

    ref = weakref.ref(make(1))
    assert ref() is not None
    make.cache_clear()
    assert ref() is None


def test_local_works_for_async_functions():
    import asyncio

    @cache.local
    async def connect(url):
        return Client(url)

    async def main():
        a = await connect("u")
        assert await connect("u") is a

    asyncio.run(main())
