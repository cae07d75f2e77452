# file: examples/docs/quickstart_2.py
import anyio

from examples.docs.quickstart_1 import api


async def main() -> None:
    # The same validation, dependencies and auth as over HTTP, without a server.
    note = await api.call("add_note", {"text": "from a script"}, headers={"X-User": "ada"})
    print(note)
    print(await api.call("list_notes", {"author": "ada"}))


if __name__ == "__main__":
    anyio.run(main)
