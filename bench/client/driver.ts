// bench/client_bench.py's load driver: ONE Node process drives every client in turn, on loopback.
//
// Run (bench/client_bench.py does): node driver.mjs '<settings as JSON>' (after build.mjs bundled it
// with the generated tether client). Prints one JSON object: for each scenario and client, the
// wall time of each measured round, and the CPU time the driver and that client's server spent.
//
// Scenario "batch": `calls` calls of add(a, b) fired in one tick and awaited together (Promise.all).
// Scenario "sequential": `calls` calls, each awaited before the next is made.
// Rounds are interleaved: round r runs every client once, in an order rotated by r, so that all
// of them see the same conditions of the machine.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { createTRPCClient, httpBatchLink } from "@trpc/client";
import { WebSocket } from "ws";
import { createApi } from "tether-api";

interface Settings {
  urls: Record<string, string>; // client name -> its server's origin
  pids: Record<string, number>; // client name -> its server's process id
  rounds: number;
  warmup: number;
  calls: number;
  scenarios: string[];
  clock_ticks: number; // USER_HZ, the unit of /proc/<pid>/stat's CPU times
}

interface Client {
  name: string;
  add(a: number, b: number): Promise<number>;
  close(): void;
}

const settings = JSON.parse(process.argv[2] ?? "{}") as Settings;

function serverCpu(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / settings.clock_ticks;
}

function tetherClient(name: string, transport: "jsonrpc" | "http" | "websocket"): Client {
  const api = createApi({
    baseUrl: settings.urls[name],
    transport,
    live: false, // calls only: no live-push subscription next to them
    WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
  });
  return { name, add: (a, b) => api.add({ a, b }), close: () => api.client.close() };
}

function trpcClient(name: string): Client {
  // Untyped here (the router lives in the server's process); the proxy is the same at runtime.
  const trpc = createTRPCClient<any>({ links: [httpBatchLink({ url: settings.urls[name] })] }) as any;
  return { name, add: (a, b) => trpc.add.query({ a, b }) as Promise<number>, close: () => {} };
}

function fetchClient(name: string): Client {
  const url = `${settings.urls[name]}/add`;
  return {
    name,
    async add(a, b) {
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ a, b }),
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return ((await response.json()) as { result: number }).result;
    },
    close: () => {},
  };
}

const makers: Record<string, (name: string) => Client> = {
  "tether jsonrpc": (n) => tetherClient(n, "jsonrpc"),
  "tether http": (n) => tetherClient(n, "http"),
  "tether websocket": (n) => tetherClient(n, "websocket"),
  "trpc httpBatchLink": trpcClient,
  "fetch fastapi": fetchClient,
};
const clients = Object.keys(settings.urls).map((name) => makers[name]!(name));

function check(got: number, a: number, b: number, client: string): void {
  if (got !== a + b) throw new Error(`${client}: add(${a}, ${b}) answered ${JSON.stringify(got)}`);
}

/** One round of `scenario` on `client`: its wall time in ms (and each call's, when sequential). */
async function round(client: Client, scenario: string, r: number, perCall: number[] | null): Promise<number> {
  const n = settings.calls;
  const base = r * n;
  const start = performance.now();
  if (scenario === "batch") {
    const answers = await Promise.all(Array.from({ length: n }, (_, i) => client.add(base + i, 7)));
    const elapsed = performance.now() - start;
    answers.forEach((got, i) => check(got, base + i, 7, client.name));
    return elapsed;
  }
  let last = start;
  for (let i = 0; i < n; i++) {
    const got = await client.add(base + i, 7);
    const now = performance.now();
    perCall?.push(now - last);
    last = now;
    check(got, base + i, 7, client.name);
  }
  return last - start;
}

interface Measured {
  round_ms: number[];
  call_ms: number[];
  driver_cpu_s: number;
  server_cpu_s: number;
  wall_s: number;
}

async function scenario(name: string): Promise<Record<string, Measured>> {
  for (let r = 0; r < settings.warmup; r++) {
    for (const client of clients) await round(client, name, -1 - r, null);
  }
  const out: Record<string, Measured> = {};
  const cpuStart: Record<string, number> = {};
  for (const client of clients) {
    out[client.name] = { round_ms: [], call_ms: [], driver_cpu_s: 0, server_cpu_s: 0, wall_s: 0 };
    cpuStart[client.name] = serverCpu(settings.pids[client.name]!);
  }
  for (let r = 0; r < settings.rounds; r++) {
    for (let k = 0; k < clients.length; k++) {
      const client = clients[(r + k) % clients.length]!;
      const m = out[client.name]!;
      const cpu = process.cpuUsage();
      const ms = await round(client, name, r, name === "sequential" ? m.call_ms : null);
      const used = process.cpuUsage(cpu);
      m.driver_cpu_s += (used.user + used.system) / 1e6;
      m.round_ms.push(ms);
      m.wall_s += ms / 1000;
    }
  }
  for (const client of clients) {
    out[client.name]!.server_cpu_s = serverCpu(settings.pids[client.name]!) - cpuStart[client.name]!;
  }
  return out;
}

const results: Record<string, Record<string, Measured>> = {};
for (const name of settings.scenarios) results[name] = await scenario(name);
for (const client of clients) client.close();
// Exit once the pipe took it all (process.exit right after write would cut it at 64 KiB).
process.stdout.write(JSON.stringify({ node: process.version, results }) + "\n", () => process.exit(0));
