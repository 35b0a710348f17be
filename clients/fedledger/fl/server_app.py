"""The coordinator of a FedLedger task: a Flower ServerApp acting as the task's publisher.

It orchestrates and relays; it never aggregates, never decrypts and holds no key share (paper 003:
the publisher "does not directly participate in data aggregation"). Per round it opens the round on
the ledger, asks each participant's node to train and contribute, relays the ciphertexts to the
round's leader (a committee member's node) to aggregate, relays updates and aggregate to the
committee to verify, vote and partially decrypt, and hands the partials of members whose valid
vote is on the ledger to the leader, which combines them and closes the round. Every byte it
relays is checked against the ledger's hash and kept in its own home.

Run config: see ``fl.config.RunConfig`` (``home`` is the coordinator's own party home).
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedledger.errors import FedLedgerError
from fedledger.fabric.ledger import Ledger
from fedledger.fl import task as tasks
from fedledger.fl.artifacts import digest_of
from fedledger.fl.company import CompanySession
from fedledger.fl.baseline import PlainFedAvg
from fedledger.fl.config import Protocol, RunConfig
from fedledger.fl.flower_waits import shorten_waits
from fedledger.fl.messages import MessageType
from fedledger.fl.party import verify_hello
from fedledger.fl.custody import Custody
from fedledger.fl.rounds import (
    RoundError,
    RoundStatus,
    TaskPlan,
    close_collection,
    current_master,
    derive_closing_model,
    keep_checked,
    model_from_bytes,
    open_round,
)

app = ServerApp()

# A task stops cleanly, rather than spending rounds, once this many rounds in a row have failed.
MAX_FAILED_ROUNDS_IN_A_ROW = 2


class RoundFailed(RoundError):
    """A round was failed on the ledger, with its reason; the task may go on with the next."""


log = logging.getLogger("fedledger.coordinator")


def _say(text: str) -> None:
    log.info(text)


def _log_to_stderr() -> None:
    """The coordinator's progress lines, in the one format `fedledger train` streams from Flower's log."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[fedledger] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def check_hello(ledger: Ledger, plan: TaskPlan, connected: set[str], company: str, challenge: bytes,
                signature: bytes) -> str:
    """Why a node's claim to be ``company`` is refused, or "" if it holds.

    The claim holds when ``company`` takes part in the task, has no node connected yet, and the
    signature over the coordinator's fresh challenge verifies against the node key that ``company``
    recorded on the ledger with its own Fabric identity.
    """
    if company not in plan.participants and company not in plan.committee:
        return f"it claims {company}, which takes no part in task {plan.task_id}"
    if company in connected:
        return f"it claims {company}, whose node is already connected"
    if all(c["name"] != company for c in ledger.list_companies()):
        return f"it claims {company}, which the ledger does not know"
    node_key = str(ledger.get_company(company).get("node_key", ""))
    if not node_key:
        return f"it claims {company}, which has recorded no node key on the ledger"
    if not verify_hello(node_key, challenge, company, signature):
        return (f"it claims {company}, but its signature does not verify against the node key {company} "
                "recorded on the ledger")
    return ""


@dataclass
class Replies:
    """What a message to several nodes brought back: results by company, and why others did not answer."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def ledger_seconds(self) -> float:
        """The longest any answering node spent on the ledger for this message (0 if none said)."""
        return max((float(r.get("ledger-seconds", 0.0)) for r in self.results.values()), default=0.0)


def payload_bytes(values: Any) -> int:
    """The bytes a message's values carry: byte strings and text by length, numbers at 8 bytes."""
    if isinstance(values, bytes | bytearray):
        return len(values)
    if isinstance(values, str):
        return len(values.encode())
    if isinstance(values, dict):
        return sum(payload_bytes(v) for v in values.values())
    if isinstance(values, list | tuple):
        return sum(payload_bytes(v) for v in values)
    return 8


# How often the coordinator looks for replies, and for nodes that left without answering: every
# look is a request to the SuperLink, which all the nodes' own polls share.
REPLY_POLL_SECONDS = 0.1
NODE_CHECK_SECONDS = 1.0

# Members asked for a partial decryption beyond the threshold, so one that fails does not fail the round.
SPARE_DECRYPTERS = 1


@dataclass
class Coordinator:
    """One task's coordinator: one method per protocol phase, the ledger as the source of truth."""

    grid: Grid
    session: CompanySession
    config: RunConfig
    plan: TaskPlan
    nodes: dict[int, str] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    failovers: list[dict[str, Any]] = field(default_factory=list)
    # Payload bytes each company's node received from and sent to the coordinator, this round.
    wire: dict[str, dict[str, int]] = field(default_factory=dict)

    # --- messaging -------------------------------------------------------------------------------
    def ask(self, companies: dict[int, str], message_type: MessageType | dict[int, MessageType],
            content: dict[int, dict[str, Any]], *, enough: int | None = None, timeout: float | None = None) -> Replies:
        """Send one message per node (``content``, and the type if it differs, by node id); gather each
        company's result.

        Stops waiting once ``enough`` companies answered, or once every node still owing an answer
        has left the federation. Every company that did not answer is named with the reason.
        """
        timeout = self.config.round_timeout if timeout is None else timeout
        types = message_type if isinstance(message_type, dict) else {node: message_type for node in companies}
        messages = [Message(RecordDict({"config": ConfigRecord(content[node])}), dst_node_id=node,
                            message_type=str(types[node])) for node in companies]
        owed = dict(zip(self.grid.push_messages(messages), companies))
        for node, company in companies.items():
            self.wire.setdefault(company, {"received": 0, "sent": 0})["received"] += payload_bytes(content[node])
        replies = Replies()
        deadline = time.monotonic() + timeout
        looked = time.monotonic()  # when the nodes still owing an answer were last looked for
        while owed and time.monotonic() < deadline:
            for reply in self.grid.pull_messages(list(owed)):
                node = owed.pop(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
                company = companies.get(node, str(node))
                if reply.has_error():
                    replies.problems[company] = f"its node failed: {reply.error.reason}"
                else:
                    replies.results[company] = dict(reply.content["result"])
                    self.wire.setdefault(company, {"received": 0, "sent": 0})["sent"] += \
                        payload_bytes(replies.results[company])
            if enough is not None and len(replies.results) >= enough:
                break
            if time.monotonic() - looked >= NODE_CHECK_SECONDS:
                looked = time.monotonic()
                online = set(self.grid.get_node_ids())
                for message_id, node in list(owed.items()):
                    if node not in online:
                        replies.problems[companies[node]] = "its node left the federation without answering"
                        del owed[message_id]
            time.sleep(REPLY_POLL_SECONDS)
        for node in owed.values():
            replies.problems.setdefault(companies[node], f"no answer within {timeout:.0f} s")
        for node, company in companies.items():
            if company in replies.problems:
                _say(f"{types[node]}: {company}: {replies.problems[company]}")
        return replies

    def training_message(self, n: int, model: bytes) -> dict[str, Any]:
        """What a company needs to train in round ``n`` from ``model``: the run's local training settings."""
        cfg = self.config
        return {"task-id": self.plan.task_id, "round": n, "model": model, "seed": cfg.seed,
                "local-epochs": cfg.local_epochs, "batch-size": cfg.batch_size, "lr": cfg.lr,
                "partitioner": str(cfg.partitioner), "alpha": cfg.alpha}

    def nodes_of(self, names: tuple[str, ...] | list[str]) -> dict[int, str]:
        """The connected nodes of the companies ``names``, by Flower node id."""
        return {n: c for n, c in self.nodes.items() if c in names}

    # --- phase 0: who is who ---------------------------------------------------------------------
    def connect_nodes(self) -> None:
        """Map Flower nodes to companies: each proves it holds the node key its company put on the ledger."""
        wanted = set(self.plan.participants) | set(self.plan.committee)
        deadline = time.monotonic() + self.config.connect_timeout
        refused: dict[int, str] = {}
        while time.monotonic() < deadline and not wanted <= set(self.nodes.values()):
            fresh = {n: str(n) for n in self.grid.get_node_ids() if n not in self.nodes and n not in refused}
            if fresh:
                challenges = {n: secrets.token_bytes(32) for n in fresh}
                replies = self.ask(fresh, MessageType.HELLO, {n: {"challenge": c} for n, c in challenges.items()},
                                   timeout=30)
                for node, label in fresh.items():
                    answer = replies.results.get(label)
                    if answer is None:
                        continue
                    verdict = check_hello(self.session.ledger, self.plan, set(self.nodes.values()),
                                          str(answer["company"]), challenges[node], bytes(answer["signature"]))
                    if verdict:
                        refused[node] = verdict
                        _say(f"node {node} refused: {verdict}")
                    else:
                        self.nodes[node] = str(answer["company"])
            time.sleep(0.5)
        _say(f"task {self.plan.task_id}: nodes {sorted(self.nodes.values())}")
        present = set(self.nodes.values()) & set(self.plan.participants)
        if len(present) < self.plan.task["min_participants"]:
            raise RoundError(f"only {sorted(present)} proved who they are; task {self.plan.task_id} needs "
                             f"{self.plan.task['min_participants']} participants")

    # --- one round -------------------------------------------------------------------------------
    def train_round(self, n: int, global_model: bytes, model_sha: str,
                    previous_model: bytes = b"") -> tuple[bytes, str, dict[str, Any]]:
        """Run round ``n`` from ``global_model``; return the new model, its hash and the round's metrics.

        ``previous_model`` is the one round ``n - 1`` started from (empty in round 1): the leader's
        server momentum steps along the difference of the two.
        """
        plan, ledger, store, cfg = self.plan, self.session.ledger, self.session.store, self.config
        times: dict[str, float] = {}
        self.wire = {}
        ledger_before = ledger.use
        started, started_at = time.perf_counter(), time.time()
        tx_open = open_round(plan, ledger, n)
        times["ledger_open"] = time.perf_counter() - started

        common = {"task-id": plan.task_id, "round": n}
        committee = self.nodes_of(plan.committee)
        participants = self.nodes_of(plan.participants)
        train = self.training_message(n, global_model)
        # One exchange: a participant on the committee proves for the round's election before it
        # trains (its proof and its update touch different keys); a member that does not train
        # only proves.
        kinds = {node: MessageType.TRAIN if node in participants else MessageType.ELECT
                 for node in {**committee, **participants}}
        t = time.perf_counter()
        first = self.ask({**committee, **participants}, kinds,
                         {node: {**(train if node in participants else common), "elect": node in committee}
                          for node in kinds})
        times["elect_train_and_encrypt_wall"] = time.perf_counter() - t
        trained = Replies({c: r for c, r in first.results.items() if "update" in r},
                          {c: p for c, p in first.problems.items() if c in participants.values()})
        electors = Replies({c: r for c, r in first.results.items() if c in committee.values()
                            and not r.get("election-error")},
                           {**{c: p for c, p in first.problems.items() if c in committee.values()},
                            **{c: f"its election proof was refused: {r['election-error']}"
                               for c, r in first.results.items() if r.get("election-error")}})
        listed = {u["company"]: u["artifact_sha256"] for u in ledger.list_updates(plan.task_id, n)}
        updates = keep_checked(store, listed, {c: bytes(r["update"]) for c, r in trained.results.items()},
                               what="update")
        if len(listed) < int(plan.task["min_participants"]):
            return self._fail(n, f"{len(listed)} update(s) recorded, {plan.task['min_participants']} needed: "
                                 f"{trained.problems}")
        try:
            record = close_collection(plan, ledger, n)
        except FedLedgerError as err:
            return self._fail(n, f"collection could not close: {err}")
        lost = sorted(set(record.get("collected", [])) - set(updates))
        if lost:
            # Recorded on the ledger but never relayed: no complete aggregate can be made.
            return self._fail(n, f"the ciphertexts of {', '.join(lost)} were recorded but never arrived")
        companies, ciphertexts = list(updates), list(updates.values())

        t = time.perf_counter()
        leader, led = "", Replies()
        for candidate in record["election"]["ranking"]:
            node = self.nodes_of([candidate])
            if not node:
                _say(f"round {n}: ranked leader {candidate} has no connected node; the next may lead after its window")
                continue
            led = self.ask(node, MessageType.AGGREGATE,
                           {nid: {**common, "companies": companies, "updates": ciphertexts} for nid in node})
            if candidate in led.results:
                leader = candidate
                break
        times["aggregate"] = time.perf_counter() - t
        if not leader:
            return self._fail(n, f"no ranked leader recorded the aggregate: {led.problems}")
        leader_node = self.nodes_of([leader])
        aggregate = bytes(led.results[leader]["aggregate"])
        record = ledger.get_round(plan.task_id, n)
        keep_checked(store, {"aggregate": record.get("aggregate", {}).get("sha256", "")}, {"aggregate": aggregate},
                     what="aggregate")

        t = time.perf_counter()
        check = {**common, "companies": companies, "updates": ciphertexts, "aggregate": aggregate,
                 "verdict-timeout": cfg.round_timeout}
        # Every member checks and votes; only t + SPARE_DECRYPTERS of them, first in the election's
        # ranking, also decrypt: t partials are combined, and more are work nobody uses.
        ranked = [c for c in record["election"]["ranking"] if c in committee.values()]
        decrypters = set(ranked[:plan.key.threshold + SPARE_DECRYPTERS]) if plan.custody is Custody.THRESHOLD \
            else set(committee.values())
        verified = self.ask(committee, MessageType.VERIFY,
                            {node: {**check, "decrypt": company in decrypters} for node, company in committee.items()})
        times["verify_and_decrypt"] = time.perf_counter() - t
        record = ledger.get_round(plan.task_id, n)
        if record["status"] != RoundStatus.VERIFIED:
            reasons = {c: r.get("reason", "") for c, r in verified.results.items()} | verified.problems
            return self._fail(n, f"the committee did not verify the aggregate: {reasons}")
        if plan.custody is Custody.THRESHOLD:
            given = sum(1 for r in verified.results.values() if r.get("partial"))
            if given < plan.key.threshold:
                return self._fail(n, f"{given} partial decryption(s) arrived, {plan.key.threshold} needed: "
                                     f"{verified.problems}")
        refusals = {c: str(r["partial-error"]) for c, r in verified.results.items() if r.get("partial-error")}
        if plan.custody is Custody.ESCROW:
            decryption: dict[str, Any] = self._escrow_opening(n, verified, aggregate, times)
        else:
            partials = {c: bytes(r["partial"]) for c, r in verified.results.items() if r.get("partial")}
            # Kept, like every artifact relayed, when it is the partial the member's vote records: an
            # auditor re-derives the model from them.
            recorded = {v["member"]: v.get("partial_sha256", "") for v in ledger.list_votes(plan.task_id, n)}
            for member, raw in partials.items():
                if recorded.get(member) == digest_of(raw):
                    store.put(raw)
            decryption = {"members": list(partials) or [""], "partials": list(partials.values()) or [b""]}
        t = time.perf_counter()
        finish = {**common, "model": global_model, "aggregate": aggregate, "previous-model": previous_model,
                  **decryption}
        closed = self.ask(leader_node, MessageType.FINISH, {node: finish for node in leader_node})
        times["combine_and_close"] = time.perf_counter() - t
        closed_record = ledger.get_round(plan.task_id, n)
        recovered = ""
        if leader in closed.results:
            model = bytes(closed.results[leader]["model"])
        elif closed_record["status"] == RoundStatus.CLOSED:
            # The leader closed the round on the ledger but its answer was lost (its node died after
            # the close): the model follows from the public artifacts this coordinator kept.
            recovered = closed.problems.get(leader, "no result")
            _say(f"round {n}: the leader {leader} closed the round but its answer was lost ({recovered}); "
                 "re-deriving the model from the recorded partial decryptions")
            try:
                model = derive_closing_model(plan, ledger, store, round_number=n, start=global_model,
                                             previous=previous_model or None)
            except FedLedgerError as err:
                raise RoundError(f"round {n} is closed on the ledger, but its model neither came back from the "
                                 f"leader {leader} ({recovered}) nor can be re-derived: {err}") from None
        else:
            return self._fail(n, f"the leader {leader} did not close the round: "
                                 f"{closed.problems.get(leader, 'no result')}")
        model_sha = closed_record.get("model_sha256", "")
        keep_checked(store, {"model": model_sha}, {"model": model}, what="model")
        # The ledger's share of the round: the coordinator's own calls, plus for each message the
        # node that spent longest on the ledger answering it (the phase waited for that node).
        times["ledger_critical_path"] = (ledger.use - ledger_before).seconds + sum(
            replies.ledger_seconds for replies in (first, led, verified, closed))
        times["round_wall"] = time.perf_counter() - started
        entry = {"round": n, "started_at": started_at, "included": list(record["aggregate"]["included"]),
                 "missing": sorted(set(plan.participants) - set(record["aggregate"]["included"])),
                 "aggregate_sha256": record["aggregate"]["sha256"], "leader": leader,
                 "ranking": list(record["election"]["ranking"]),
                 "leader_failovers": list(record["election"].get("failovers", [])),
                 "standing": dict(closed_record.get("standing", {})),
                 "epsilon_booked": closed_record["epsilon_after_micro"] / 1_000_000,
                 "votes": {c: bool(r["valid"]) for c, r in verified.results.items()},
                 "decrypted_by": list(closed_record.get("decrypted_by", [])),
                 **({"model_recovered": recovered} if recovered else {}),
                 "unanswered": {**electors.problems, **trained.problems, **verified.problems},
                 "partials_refused": refusals,
                 "failovers": [f for f in self.failovers if f["round"] == n],
                 "seconds": times,
                 "wire_bytes": {c: dict(w) for c, w in sorted(self.wire.items())},
                 "company_epsilons": {c: float(r["local-epsilon"]) for c, r in trained.results.items()
                                      if float(r["local-epsilon"]) > 0},
                 "client_seconds": {c: {"train": float(r["train-seconds"]),
                                        "encrypt_and_ledger": float(r["encrypt-and-ledger-seconds"])}
                                    for c, r in trained.results.items()},
                 "tx_ids": {"open": tx_open, "aggregate": str(led.results[leader]["tx-id"]),
                            "close": str(closed.results.get(leader, {}).get("tx-id", "")),
                            **{f"update:{c}": str(r["tx-id"]) for c, r in trained.results.items()}}}
        return model, model_sha, entry

    def _escrow_opening(self, n: int, verified: Replies, aggregate: bytes, times: dict[str, float]) -> dict[str, Any]:
        """The escrow master's opening of round ``n``'s aggregate; after a failover if the master gave none.

        A master that did not answer (or answered without a decryption) is replaced on the ledger
        by the publisher; the other members re-seal their escrow shares to the new master, which
        rebuilds the key and decrypts. Everything that happened goes into the round's metrics.
        """
        ledger, common = self.session.ledger, {"task-id": self.plan.task_id, "round": n}
        master = current_master(ledger, self.plan.task_id)
        opening = verified.results.get(master, {}).get("opening")
        if opening:
            self.session.store.put(bytes(opening))
            return {"master": master, "opening": bytes(opening)}
        t = time.perf_counter()
        why = verified.problems.get(master) or str(verified.results.get(master, {}).get("partial-error", "")) \
            or "gave no decryption"
        ledger.failover_master(self.plan.task_id, reason=f"round {n}: master {master}: {why}"[:500])
        successor = current_master(ledger, self.plan.task_id)
        _say(f"round {n}: master {master} failed ({why}); the ledger names {successor} master")
        members = self.nodes_of([c for c in self.plan.committee if c not in (master, successor)])
        released = self.ask(members, MessageType.RELEASE, {node: common for node in members})
        new_master = self.nodes_of([successor])
        decrypted = self.ask(new_master, MessageType.DECRYPT, {node: {**common, "aggregate": aggregate}
                                                               for node in new_master})
        times["failover"] = time.perf_counter() - t
        self.failovers.append({"round": n, "from": master, "to": successor, "reason": why,
                               "released_by": sorted(released.results)})
        if successor not in decrypted.results:
            self._fail(n, f"the new master {successor} did not decrypt: "
                          f"{decrypted.problems.get(successor, 'no result')}")
        self.session.store.put(bytes(decrypted.results[successor]["opening"]))
        return {"master": successor, "opening": bytes(decrypted.results[successor]["opening"])}

    def _fail(self, n: int, reason: str) -> NoReturn:
        """Fail round ``n`` on the ledger with ``reason`` (unless the ledger already ended it) and stop it."""
        status = self.session.ledger.get_round(self.plan.task_id, n)["status"]
        if status not in (RoundStatus.CLOSED, RoundStatus.FAILED):
            self.session.ledger.fail_round(self.plan.task_id, n, reason=reason[:500])
        raise RoundFailed(f"round {n}: {reason}")

    # --- the whole task --------------------------------------------------------------------------
    def begin(self, extra: dict[str, Any]) -> tuple[Any, Any, bytes, str]:
        """Connect the nodes, load the test data and score the task's initial model as round 0 (with
        ``extra`` in its metrics); return the evaluator, the dataset, the model and its hash."""
        plan = self.plan
        self.connect_nodes()
        dataset = tasks.load_dataset(plan.description.model, data_path=self.config.data_path or None,
                                     seed=self.config.seed)
        model_sha = plan.task["model"]["initial_weights_sha256"]
        model = self.session.store.get(model_sha)
        evaluator = tasks.build_model(plan.description.model)
        self.score(evaluator, dataset, 0, model, model_sha, extra)
        return evaluator, dataset, model, model_sha

    def run(self) -> None:
        """Train the task to its last round (or its privacy budget), recording every step on the ledger."""
        plan = self.plan
        evaluator, dataset, model, model_sha = self.begin({"epsilon": 0.0, "privacy_unit": str(plan.unit)})
        budget = float(plan.task["dp"]["epsilon_budget"])
        previous, failed_in_a_row = b"", 0
        for n in range(1, plan.task["rounds"] + 1):
            closed = int(self.session.ledger.get_task(plan.task_id)["closed_rounds"])
            epsilon = plan.epsilon_after(closed + 1)
            if epsilon > budget:
                _say(f"stopping before round {n}: epsilon would reach {epsilon:.3f} > budget {budget}")
                self.metrics.append({"stopped": f"round {n} would spend epsilon {epsilon:.3f} > budget {budget}"})
                self.save()
                break
            try:
                trained, model_sha, entry = self.train_round(n, model, model_sha, previous)
            except RoundFailed as err:
                # The round is failed on the ledger with its reason; the task moves on from the same model.
                failed_in_a_row += 1
                _say(f"{err}")
                self.metrics.append({"round": n, "failed": str(err)})
                self.save()
                if failed_in_a_row >= MAX_FAILED_ROUNDS_IN_A_ROW:
                    self.metrics.append({"stopped": f"{failed_in_a_row} rounds in a row failed"})
                    self.save()
                    break
                continue
            failed_in_a_row = 0
            previous, model = model, trained
            self.score(evaluator, dataset, n, model, model_sha,
                           {"epsilon": epsilon, "privacy_unit": str(plan.unit), **entry})

    def score(self, evaluator: Any, dataset: Any, n: int, model: bytes, model_sha: str,
              extra: dict[str, Any]) -> None:
        """Score round ``n``'s model on the test split; record it with ``extra`` in the metrics."""
        tasks.set_flat(evaluator, model_from_bytes(model))
        loss, accuracy = tasks.evaluate(evaluator, dataset.x_test, dataset.y_test)
        self.metrics.append({**extra, "round": n, "accuracy": accuracy, "loss": loss, "model_sha256": model_sha})
        missing = extra.get("missing") or []
        _say(f"round {n}: accuracy {accuracy:.4f} loss {loss:.4f} epsilon {extra['epsilon']:.3f}"
             + (f" updates {len(extra.get('included', []))}" if n else "")
             + (f" missing {','.join(missing)}" if missing else ""))
        self.save()

    def save(self) -> None:
        if self.config.metrics_json:
            Path(self.config.metrics_json).write_text(json.dumps({"task_id": self.plan.task_id,
                                                                  "rounds": self.metrics}, indent=2, sort_keys=True))


@app.main()
def main(grid: Grid, context: Context) -> None:
    from flwr.superlink.grid import http_grid

    _log_to_stderr()
    # The replies' objects are pulled with a short first backoff, not Flower's 1 s.
    shorten_waits(http_grid)
    config = RunConfig.from_flower(dict(context.run_config))
    with CompanySession.open(config.home) as session:
        plan = TaskPlan.load(session.ledger, config.task_id)
        coordinator = Coordinator(grid, session, config, plan)
        try:
            if config.protocol is Protocol.PLAIN_FEDAVG:
                PlainFedAvg(coordinator).run()
            else:
                coordinator.run()
        except Exception as err:
            # `flwr run` exits 0 even when the ServerApp raised: the outcome is read from the metrics.
            coordinator.metrics.append({"error": f"{type(err).__name__}: {err}"})
            coordinator.save()
            raise
