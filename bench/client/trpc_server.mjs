// tRPC's standalone Node server for bench/client_bench.py: the query `add({a, b})`, input checked by zod.
// Run: node trpc_server.mjs PORT   (listens on 127.0.0.1:PORT, prints "ready PORT" when it does)
import { initTRPC } from "@trpc/server";
import { createHTTPServer } from "@trpc/server/adapters/standalone";
import { z } from "zod";

const t = initTRPC.create();
const appRouter = t.router({
  add: t.procedure
    .input(z.object({ a: z.number().int(), b: z.number().int() }))
    .query(({ input }) => input.a + input.b),
});

const port = Number(process.argv[2]);
const server = createHTTPServer({ router: appRouter });
server.listen(port, "127.0.0.1");
server.on("listening", () => console.log(`ready ${port}`));
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => server.close(() => process.exit(0)));
