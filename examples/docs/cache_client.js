// file: examples/docs/cache_client.js
// A cache of context bundles, kept fresh by the entries the server sends.
export class BundleCache {
  constructor(prefix = "/api") {
    this.prefix = prefix;
    this.bundles = new Map(); // "todos?owner_id=5" -> {context, params, value}
  }

  // Returns the bundle {slot: value}, fetched once per context and params.
  async get(context, params = {}) {
    const query = new URLSearchParams(Object.entries(params).sort());
    const key = `${context}?${query}`;
    if (!this.bundles.has(key)) {
      const response = await fetch(`${this.prefix}/context/${context}?${query}`);
      const body = await response.json();
      if (body.error) throw new Error(`${body.error.code}: ${body.error.message}`);
      this.bundles.set(key, { context, params, value: body.result });
    }
    return this.bundles.get(key).value;
  }

  // Calls a command, and applies its effects at once (pushes reach the other clients).
  async call(name, params = {}) {
    const response = await fetch(`${this.prefix}/call/${name}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(params),
    });
    const body = await response.json();
    if (body.error) throw new Error(`${body.error.code}: ${body.error.message}`);
    this.apply(body);
    return body.result;
  }

  // Applies an answer or a push: drops what it invalidates, patches what it merges.
  apply(message) {
    if (message.resync) return this.bundles.clear(); // refetch everything on next get
    for (const entry of message.invalidate ?? []) {
      for (const [key] of this.matching(entry)) this.bundles.delete(key);
    }
    for (const entry of message.merge ?? []) {
      for (const [, bundle] of this.matching(entry)) bundle.value[entry.slot] = entry.value;
    }
  }

  // Bundles of the entry's context that agree on each param the entry gives.
  matching(entry) {
    const given = Object.entries(entry.params ?? {});
    return [...this.bundles].filter(
      ([, bundle]) =>
        bundle.context === entry.context &&
        given.every(([name, value]) => !(name in bundle.params) || bundle.params[name] === value),
    );
  }

  // Follows everyone's changes over SSE; EventSource reconnects and resumes by itself.
  follow(contexts, params = {}, onChange = () => {}) {
    const query = new URLSearchParams({ contexts: contexts.join(","), ...params });
    const source = new EventSource(`${this.prefix}/live?${query}`);
    for (const type of ["effects", "resync"]) {
      source.addEventListener(type, (event) => {
        this.apply(JSON.parse(event.data));
        onChange();
      });
    }
    return source;
  }
}
