// The demo page: every piece of data comes through the generated client (./api/), and every
// change reaches the screen the way the server declared it (affects: a refetch; merge: a splice).
import { type FormEvent, Fragment, useState, useSyncExternalStore } from "react";
import {
  type Stats,
  type TetherError,
  type Todo,
  TetherProvider,
  useAddTodo,
  useCounter,
  useDeleteTodo,
  useRenameUser,
  useStats,
  useTodos,
  useToggleTodo,
  useUser,
} from "./api/index.js";
import { ErrorLine, asTetherError } from "./errors.js";
import { api, currentName, signInAs } from "./session.js";

/** The whole page, under the provider of the one client. */
export function App() {
  return (
    <TetherProvider client={api}>
      <Page />
    </TetherProvider>
  );
}

function Page() {
  const [name, setName] = useState(currentName());
  return (
    <main>
      <header>
        <h1>tether todo demo</h1>
        <LiveStatus />
      </header>
      <SignIn
        name={name}
        onSignIn={(next) => {
          signInAs(next);
          setName(next);
        }}
      />
      {/* Keyed by the name: signing in as someone else starts these afresh (forms, errors). */}
      <Fragment key={name}>
        <UserPanel />
        <TodoPanel />
        <StaffPanel />
      </Fragment>
      <CounterPanel />
    </main>
  );
}

function LiveStatus() {
  const status = useSyncExternalStore(
    (listener) => api.client.onLiveStatus(listener),
    () => api.client.liveStatus(),
  );
  return (
    <p className={`live live-${status}`} data-testid="live-status" data-status={status}>
      live push: {status}
    </p>
  );
}

function SignIn({ name, onSignIn }: { name: string; onSignIn: (name: string) => void }) {
  const [draft, setDraft] = useState(name);
  function submit(event: FormEvent) {
    event.preventDefault();
    onSignIn(draft.trim());
  }
  return (
    <form onSubmit={submit} className="row" aria-label="Sign in">
      <label>
        Your name (sent as <code>Authorization: Bearer &lt;name&gt;</code>; <code>admin</code> is
        staff){" "}
        <input data-testid="name-input" value={draft} onChange={(e) => setDraft(e.target.value)} />
      </label>
      <button type="submit" data-testid="name-submit" disabled={draft.trim() === name}>
        Sign in
      </button>
    </form>
  );
}

function UserPanel() {
  const user = useUser();
  const rename = useRenameUser();
  const [draft, setDraft] = useState("");
  const profile = user.data?.current_user;
  function submit(event: FormEvent) {
    event.preventDefault();
    rename.mutate({ display_name: draft }).then(
      () => setDraft(""),
      () => undefined, // shown from rename.error
    );
  }
  return (
    <section aria-labelledby="user-heading" data-testid="user-panel" data-status={user.status}>
      <h2 id="user-heading">You</h2>
      <ErrorLine error={user.error} testId="user-error" />
      {profile !== undefined && (
        <p>
          <strong data-testid="user-display-name">{profile.display_name}</strong> (signed in as{" "}
          <span data-testid="user-name">{profile.name}</span>)
          {profile.is_staff && (
            <span className="badge" data-testid="staff-badge">
              staff
            </span>
          )}
        </p>
      )}
      {profile !== undefined && (
        <form onSubmit={submit} className="row" aria-label="Rename">
          <label>
            Display name{" "}
            <input
              data-testid="rename-input"
              value={draft}
              onChange={(e) => setDraft(e.target.value)}
              required
              maxLength={80}
            />
          </label>
          <button type="submit" data-testid="rename-submit" disabled={rename.isPending}>
            Rename
          </button>
        </form>
      )}
      <ErrorLine error={rename.error} testId="rename-error" />
    </section>
  );
}

function TodoPanel() {
  const todos = useTodos();
  const add = useAddTodo();
  const [title, setTitle] = useState("");
  const [clearError, setClearError] = useState<TetherError | undefined>(undefined);
  const list = todos.data?.list_todos ?? [];
  const done = list.filter((todo) => todo.done);

  function submit(event: FormEvent) {
    event.preventDefault();
    add.mutate({ title }).then(
      () => setTitle(""),
      () => undefined, // shown from add.error
    );
  }

  function clearDone() {
    setClearError(undefined);
    // Every delete is made in this one tick: the client sends them as one JSON-RPC batch.
    const deletes = done.map((todo) => api.deleteTodo({ id: todo.id }));
    void Promise.allSettled(deletes).then((outcomes) => {
      for (const outcome of outcomes) {
        if (outcome.status === "rejected") {
          setClearError(asTetherError(outcome.reason));
          return;
        }
      }
    });
  }

  return (
    <section aria-labelledby="todos-heading" data-testid="todo-panel" data-status={todos.status}>
      <h2 id="todos-heading">Todos</h2>
      <form onSubmit={submit} className="row" aria-label="Add a todo">
        <label>
          New todo{" "}
          <input
            data-testid="add-input"
            value={title}
            onChange={(e) => setTitle(e.target.value)}
            placeholder="What needs doing?"
            required
            maxLength={200}
          />
        </label>
        <button type="submit" data-testid="add-submit" disabled={add.isPending}>
          Add
        </button>
      </form>
      <ErrorLine error={add.error} testId="add-error" />
      <ErrorLine error={todos.error} testId="todos-error" />
      <ul data-testid="todo-list" data-count={list.length}>
        {list.map((todo) => (
          <TodoRow key={todo.id} todo={todo} />
        ))}
      </ul>
      {todos.status === "success" && list.length === 0 && <p>Nothing to do.</p>}
      <button
        type="button"
        data-testid="clear-done"
        onClick={clearDone}
        disabled={done.length === 0}
      >
        Clear done ({done.length})
      </button>
      <ErrorLine error={clearError} testId="clear-error" />
    </section>
  );
}

function TodoRow({ todo }: { todo: Todo }) {
  const toggle = useToggleTodo();
  const remove = useDeleteTodo();
  const error = remove.error ?? toggle.error;
  const ignore = () => undefined; // shown from the hook's error
  return (
    <li
      className={todo.done ? "done" : undefined}
      data-testid={`todo-${todo.id}`}
      data-done={String(todo.done)}
    >
      <span className="title" data-testid="todo-title">
        {todo.title}
      </span>{" "}
      <span className="owner">({todo.owner})</span>
      <button
        type="button"
        data-testid={`toggle-${todo.id}`}
        aria-label={`${todo.done ? "Reopen" : "Done"}: ${todo.title}`}
        onClick={() => toggle.mutate({ id: todo.id }).then(ignore, ignore)}
        disabled={toggle.isPending}
      >
        {todo.done ? "Reopen" : "Done"}
      </button>
      <button
        type="button"
        data-testid={`delete-${todo.id}`}
        aria-label={`Delete: ${todo.title}`}
        onClick={() => remove.mutate({ id: todo.id }).then(ignore, ignore)}
        disabled={remove.isPending}
      >
        Delete
      </button>
      <ErrorLine error={error} testId={`todo-error-${todo.id}`} />
    </li>
  );
}

function StaffPanel() {
  const user = useUser();
  const profile = user.data?.current_user;
  if (profile === undefined) return null;
  return (
    <section aria-labelledby="stats-heading" data-testid="stats-panel">
      <h2 id="stats-heading">Stats (staff only)</h2>
      {profile.is_staff ? <StaffStats /> : <AskForStats />}
    </section>
  );
}

function StatsLine({ stats }: { stats: Stats }) {
  return (
    <p data-testid="stats">
      <span data-testid="stats-total">{stats.total}</span> todos,{" "}
      <span data-testid="stats-done">{stats.done}</span> done,{" "}
      <span data-testid="stats-open">{stats.open}</span> open
    </p>
  );
}

// Staff read the stats through the query's hook: kept fresh by the commands that affect it.
function StaffStats() {
  const stats = useStats();
  return (
    <>
      {stats.data !== undefined && <StatsLine stats={stats.data} />}
      <ErrorLine error={stats.error} testId="stats-error" />
    </>
  );
}

// Everyone else may ask, once per click, and is shown the server's typed refusal.
function AskForStats() {
  const [stats, setStats] = useState<Stats | undefined>(undefined);
  const [error, setError] = useState<TetherError | undefined>(undefined);
  function ask() {
    setError(undefined);
    api.stats().then(setStats, (caught: unknown) => setError(asTetherError(caught)));
  }
  return (
    <>
      <button type="button" data-testid="show-stats" onClick={ask}>
        Show stats
      </button>
      {stats !== undefined && <StatsLine stats={stats} />}
      <ErrorLine error={error} testId="stats-error" />
    </>
  );
}

function CounterPanel() {
  const counter = useCounter({ every_ms: 1000 });
  return (
    <section aria-labelledby="counter-heading" data-testid="counter-panel">
      <h2 id="counter-heading">Counter (a stream)</h2>
      <p>
        <output data-testid="counter-value" aria-live="polite">
          {counter.latest ?? "…"}
        </output>{" "}
        <small data-testid="counter-status" data-status={counter.status}>
          ({counter.status}, {counter.count} received)
        </small>
      </p>
      <ErrorLine error={counter.error} testId="counter-error" />
    </section>
  );
}
