// file: examples/docs/client_live.js
// Live push in a browser, without the generator: EventSource on GET {prefix}/live.
// `onPush` is handed each push: {id, invalidate, merge}, or {id, resync: true}.
export function followLive(contexts, onPush, onReady = () => {}) {
  const source = new EventSource(`/api/live?contexts=${contexts.join(",")}`);
  source.addEventListener("ready", (event) => onReady(JSON.parse(event.data)));
  for (const type of ["effects", "resync"]) {
    source.addEventListener(type, (event) => onPush(JSON.parse(event.data)));
  }
  return () => source.close(); // until then, it reconnects by itself, with Last-Event-ID
}
