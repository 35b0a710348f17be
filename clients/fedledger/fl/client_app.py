"""A company's node in a FedLedger task: a Flower ClientApp under that company's own SuperNode.

It works from the company's own home (node config ``home``) and nothing else, and answers:

- ``query.hello``: sign the coordinator's challenge with the node key the company put on the ledger;
- ``train``: check the global model against the ledger, (a committee member, when the message says
  ``elect``) prove the VRF on the round's seed (``rounds.stand_for_leader``), train on the
  company's own data, and contribute the clipped, noised, encrypted update (``rounds.contribute``);
- ``query.elect`` (committee members that do not train): prove the VRF on the round's seed;
- ``query.aggregate`` (a ranked leader): sum the ciphertexts the ledger fixed (``rounds.lead``);
- ``query.verify`` (committee members): recompute and vote; with a valid verdict, partially decrypt
  the aggregate just recomputed with the member's share (opened from the sealed box the dealer put
  on the ledger) and record its hash with the vote;
- ``query.finish`` (the leader): combine the partials (or check the escrow master's opening) and
  close the round (``rounds.finish``, ``rounds.finish_opened``);
- under escrow custody, after a failover: ``query.release`` re-seals this member's escrow share to
  the new master on the ledger, and ``query.decrypt`` has the new master rebuild the key and decrypt;
- ``query.fedavg``, only on a node whose own node config says ``plain-baseline = "true"``: the
  plain-FedAvg yardstick a benchmark measures FedLedger against (the update goes in the clear).

Node config (``flower-supernode --node-config``): ``home``, ``partition-id`` and
``num-partitions`` (how the demo splits a bundled dataset), optional ``data-path`` and
``plain-baseline``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedledger.crypto import KeyShare, load_key_share
from fedledger.errors import FedLedgerError
from fedledger.fl.company import CompanySession
from fedledger.fl.config import Partitioner, consents_to_plain_baseline
from fedledger.fl.custody import Custody, master_private_key, release_escrow_share
from fedledger.fl.messages import MessageType
from fedledger.fl.party import read_secret, write_secret
from fedledger.fl.rounds import (
    PrivacyUnit,
    RoundError,
    RoundStatus,
    TaskPlan,
    await_verdict,
    contribute,
    current_master,
    finish,
    finish_opened,
    last_closed_round,
    lead,
    master_opening,
    model_from_bytes,
    stand_for_leader,
    starting_model_sha256,
    verify,
)
from fedledger.fl.artifacts import digest_of
from fedledger.privacy import randomized_response

def _ledger_seconds(message: Message, context: Context, call_next: Any) -> Message:
    """A ClientApp mod: every result says how long its message spent on the ledger (``ledger-seconds``),
    which the coordinator adds up along the round's critical path."""
    if "home" not in context.node_config:
        return call_next(message, context)  # type: ignore[no-any-return]
    ledger = _node(context).session.ledger
    before = ledger.use
    reply: Message = call_next(message, context)
    result = None if reply.has_error() else reply.content.get("result")
    if isinstance(result, ConfigRecord):
        result["ledger-seconds"] = (ledger.use - before).seconds
    return reply


app = ClientApp(mods=[_ledger_seconds])


@dataclass
class _Node:
    session: CompanySession
    plans: dict[str, TaskPlan] = field(default_factory=dict)
    shares: dict[str, KeyShare] = field(default_factory=dict)
    datasets: dict[tuple[str, int], Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.session.name

    def plan(self, task_id: str) -> TaskPlan:
        if task_id not in self.plans:
            self.plans[task_id] = TaskPlan.load(self.session.ledger, task_id)
        return self.plans[task_id]

    def share(self, plan: TaskPlan) -> KeyShare:
        """This member's key share: opened from its sealed box on the ledger with its own sealing key."""
        if plan.task_id not in self.shares:
            ledger = self.session.ledger
            record = ledger.get_key_share_record(plan.task_id, self.name)
            raw = self.session.home.sealing_key().open(ledger.sealed_share(plan.task_id, self.name))
            share = load_key_share(raw, plan.key)
            if share.digest() != record["share_sha256"]:
                raise RoundError(f"the key share sealed to {self.name} does not match the hash the dealer recorded")
            self.shares[plan.task_id] = share
        return self.shares[plan.task_id]


_nodes: dict[str, _Node] = {}


def _node(context: Context) -> _Node:
    home = str(context.node_config["home"])
    if home not in _nodes:
        _nodes[home] = _Node(CompanySession.open(home))
    return _nodes[home]


def _reply(message: Message, values: dict[str, Any]) -> Message:
    return Message(RecordDict({"result": ConfigRecord(values)}), reply_to=message)


def _config(message: Message) -> dict[str, Any]:
    return dict(message.content["config"])


def _task_message(message: Message, context: Context) -> tuple[dict[str, Any], _Node, TaskPlan]:
    """A task message's config, this company's node, and the task's plan (read once from the ledger)."""
    config = _config(message)
    node = _node(context)
    return config, node, node.plan(str(config["task-id"]))


def _relayed(config: dict[str, Any]) -> dict[str, bytes]:
    """The ciphertexts a message relays, by company."""
    return {str(c): bytes(u) for c, u in zip(config["companies"], config["updates"]) if c}


@app.query(MessageType.HELLO.removeprefix("query."))
def hello(message: Message, context: Context) -> Message:
    node = _node(context)
    challenge = bytes(_config(message)["challenge"])
    signature = node.session.home.node_key().sign_hello(challenge, node.name)
    return _reply(message, {"company": node.name, "signature": signature})


def _global_model(node: _Node, plan: TaskPlan, round_number: int, model: bytes) -> np.ndarray:
    """The model the round starts from (the last closed round's), as sent, checked against the ledger."""
    expected = starting_model_sha256(plan, node.session.ledger, round_number)
    if digest_of(model) != expected:
        raise RoundError(f"the coordinator sent model {digest_of(model)[:16]}… for round {round_number}; "
                         f"the ledger says it starts from {expected[:16]}…")
    node.session.store.put(model)
    return model_from_bytes(model)


def _local_data(node: _Node, context: Context, model: str, seed: int, partitioner: Partitioner,
                alpha: float) -> tuple[np.ndarray, np.ndarray, int]:
    from fedledger.fl import task as tasks
    from fedledger.fl.reference import company_parts

    if (model, seed) not in node.datasets:
        data_path = context.node_config.get("data-path")
        node.datasets[(model, seed)] = tasks.load_dataset(model, data_path=str(data_path) if data_path else None,
                                                          seed=seed)
    dataset = node.datasets[(model, seed)]
    part, parts = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    indices = company_parts(dataset.y_train, parts, partitioner=partitioner, alpha=alpha, seed=seed)[part]
    return dataset.x_train[indices], dataset.y_train[indices], int(dataset.num_classes)


def _task_labels(node: _Node, plan: TaskPlan, y: np.ndarray, num_classes: int) -> np.ndarray:
    """This company's labels for the task: randomized once per task (paper 000's label noise), then kept.

    The randomized labels are kept in the company's own home (mode 0600) and reused every round,
    so the label noise is one release whose epsilon the task books once, not a fresh one a round.
    """
    if plan.label_epsilon <= 0:
        return y
    path = node.session.home.root / "tasks" / plan.task_id / "labels.i64"
    if path.exists():
        kept = np.frombuffer(read_secret(path), dtype="<i8")
        if kept.shape == y.shape:
            return kept.astype(np.int64)
        raise RoundError(f"the labels {node.name} randomized for task {plan.task_id} ({kept.size}) do not match its "
                         f"{y.size} records; its data changed during the task")
    noisy = randomized_response(y, num_classes=num_classes, epsilon=plan.label_epsilon)
    write_secret(path, np.asarray(noisy, dtype="<i8").tobytes())
    return noisy


def warm_up() -> None:
    """Import what a ``train`` message needs and compute per-example gradients once.

    A node that keeps its ClientApp between messages (``fedledger.node.supernode``) calls this at
    start, so the first round does not pay for torch, scikit-learn and ``torch.func``'s first use,
    and its ``train-seconds`` measure training.
    """
    import sklearn.datasets  # noqa: F401 - the bundled datasets' loader
    from torch import nn

    from fedledger.fl import task as tasks  # noqa: F401
    from fedledger.fl.dpsgd import clipped_gradient_sum

    x = np.zeros((4, 2), dtype=np.float32)
    clipped_gradient_sum(nn.Linear(2, 2), x, np.array([0, 1, 0, 1]), sample_rate=1.0, clip_norm=1.0)


@app.train()
def train(message: Message, context: Context) -> Message:
    # torch is imported here, not at module level: the committee's messages need no torch.
    from fedledger.fl import task as tasks
    from fedledger.fl.dpsgd import DpSgd, clipped_gradient_sum, local_dp_sgd

    config, node, plan = _task_message(message, context)
    round_number = int(config["round"])
    global_model = _global_model(node, plan, round_number, bytes(config["model"]))
    # A participant on the committee proves for the round's election first (one exchange a round);
    # a proof refused (say, the member was demoted) does not keep its update out of the round.
    election_tx = election_error = ""
    if config.get("elect"):
        try:
            election_tx = _stand(node, plan, config)
        except FedLedgerError as err:
            election_error = str(err)
    x, y, num_classes = _local_data(node, context, plan.description.model, int(config["seed"]),
                                    Partitioner(str(config["partitioner"])), float(config["alpha"]))
    y = _task_labels(node, plan, y, num_classes)
    model = tasks.build_model(plan.description.model)
    tasks.set_flat(model, global_model)
    local_epsilon, lr = 0.0, float(config["lr"])
    if plan.gradient_sum:
        # Record level, distributed: this round is one DP-SGD step on the union of the companies' data.
        summed = clipped_gradient_sum(model, x, y, sample_rate=plan.sample_rate, clip_norm=plan.clip_norm)
        update, seconds = -summed.vector, summed.seconds
    elif plan.unit is PrivacyUnit.RECORD:
        # Record level, local: the company's own DP-SGD steps (Opacus); its update is private as sent.
        local = local_dp_sgd(model, x, y, settings=DpSgd(plan.noise_multiplier, plan.clip_norm, plan.sample_rate,
                                                         plan.steps_per_round),
                             lr=lr, delta=plan.delta, rounds_so_far=round_number - 1)
        update = tasks.get_flat(model).astype(np.float64) - global_model.astype(np.float64)
        seconds, local_epsilon = local.seconds, local.opacus_epsilon
    else:
        trained = tasks.train_local(model, x, y, epochs=int(config["local-epochs"]),
                                    batch_size=int(config["batch-size"]), lr=lr,
                                    seed=int(config["seed"]) * 1000 + round_number)
        update = tasks.get_flat(model).astype(np.float64) - global_model.astype(np.float64)
        seconds = trained.seconds
    started = time.perf_counter()
    receipt = contribute(plan, node.session.ledger, node.session.store, company=node.name,
                         round_number=round_number, update=update, samples=len(y),
                         compute_millis=int(seconds * 1000))
    return _reply(message, {"company": receipt.company, "update": receipt.data, "samples": receipt.samples,
                            "tx-id": receipt.tx_id, "election-tx-id": election_tx, "election-error": election_error,
                            "train-seconds": seconds,
                            "encrypt-and-ledger-seconds": time.perf_counter() - started,
                            "local-epsilon": local_epsilon})


class PlainBaselineRefused(RoundError):
    """A plain-FedAvg message reached a node whose company has not opted in to the yardstick."""


@app.query(MessageType.FEDAVG.removeprefix("query."))
def plain_fedavg(message: Message, context: Context) -> Message:
    """The plain-FedAvg yardstick: train from the sent model on this company's data, send the update
    in the clear. Only with the company's own consent in its node config: the update is not private."""
    from fedledger.fl.reference import local_update

    if not consents_to_plain_baseline(context.node_config):
        raise PlainBaselineRefused(
            "this node takes no part in plain FedAvg, which sends its company's update in the clear: its node "
            "config does not say plain-baseline = \"true\"")
    config, node, plan = _task_message(message, context)
    x, y, _ = _local_data(node, context, plan.description.model, int(config["seed"]),
                          Partitioner(str(config["partitioner"])), float(config["alpha"]))
    started = time.perf_counter()
    update = local_update(plan.description.model, model_from_bytes(bytes(config["model"])), x, y,
                          epochs=int(config["local-epochs"]), batch_size=int(config["batch-size"]),
                          lr=float(config["lr"]), seed=int(config["seed"]) * 1000 + int(config["round"]))
    return _reply(message, {"company": node.name, "update": update.astype("<f8").tobytes(), "samples": len(y),
                            "train-seconds": time.perf_counter() - started})


@app.query(MessageType.ELECT.removeprefix("query."))
def elect(message: Message, context: Context) -> Message:
    config, node, plan = _task_message(message, context)
    return _reply(message, {"company": node.name, "election-tx-id": _stand(node, plan, config)})


def _stand(node: _Node, plan: TaskPlan, config: dict[str, Any]) -> str:
    """This member's election proof for the round, on the ledger; its transaction id."""
    return stand_for_leader(plan, node.session.ledger, node.session.home.vrf_key(), round_number=int(config["round"]))


@app.query(MessageType.AGGREGATE.removeprefix("query."))
def aggregate(message: Message, context: Context) -> Message:
    config, node, plan = _task_message(message, context)
    receipt = lead(plan, node.session.ledger, node.session.store, company=node.name,
                   round_number=int(config["round"]), updates=_relayed(config))
    return _reply(message, {"aggregate": receipt.data, "tx-id": receipt.tx_id})


@app.query(MessageType.VERIFY.removeprefix("query."))
def verify_and_decrypt(message: Message, context: Context) -> Message:
    config, node, plan = _task_message(message, context)
    round_number, aggregate_data = int(config["round"]), bytes(config["aggregate"])
    ledger = node.session.ledger
    escrow = plan.custody is Custody.ESCROW
    decrypt = bool(config.get("decrypt", True))
    verdict = verify(plan, ledger, node.session.store, member=node.name, round_number=round_number,
                     updates=_relayed(config), aggregate_data=aggregate_data,
                     share=None if escrow or not decrypt else node.share(plan), decrypt=decrypt)
    result: dict[str, Any] = {"company": node.name, "valid": verdict.valid, "reason": verdict.reason}
    if verdict.partial:
        result["partial"] = verdict.partial
    elif verdict.valid and not escrow and decrypt:
        result["partial-error"] = f"{node.name} is not active on the ledger: its vote does not count"
    if verdict.valid and escrow and node.name == current_master(ledger, plan.task_id):
        status = await_verdict(plan, ledger, round_number=round_number, timeout=float(config["verdict-timeout"]))
        if status is not RoundStatus.VERIFIED:
            result["partial-error"] = f"the round is {status}: no decryption given"
        else:
            result["opening"] = _opening(node, plan, round_number, aggregate_data)
    return _reply(message, result)


def _opening(node: _Node, plan: TaskPlan, round_number: int, aggregate_data: bytes) -> bytes:
    """As the escrow master: the key (opened, or rebuilt after a failover) and the checked decryption."""
    ledger = node.session.ledger
    private_key = master_private_key(ledger, plan.task_key, plan.task_id, member=node.name,
                                     sealing=node.session.home.sealing_key())
    return master_opening(plan, ledger, private_key, member=node.name, round_number=round_number,
                          aggregate_data=aggregate_data)


@app.query(MessageType.RELEASE.removeprefix("query."))
def release(message: Message, context: Context) -> Message:
    config, node, plan = _task_message(message, context)
    master = current_master(node.session.ledger, plan.task_id)
    tx_id = release_escrow_share(node.session.ledger, plan.task_key, plan.task_id, member=node.name, master=master,
                                 sealing=node.session.home.sealing_key())
    return _reply(message, {"company": node.name, "master": master, "tx-id": tx_id})


@app.query(MessageType.DECRYPT.removeprefix("query."))
def decrypt(message: Message, context: Context) -> Message:
    config, node, plan = _task_message(message, context)
    opening = _opening(node, plan, int(config["round"]), bytes(config["aggregate"]))
    return _reply(message, {"company": node.name, "opening": opening})


@app.query(MessageType.FINISH.removeprefix("query."))
def close(message: Message, context: Context) -> Message:
    config, node, plan = _task_message(message, context)
    round_number = int(config["round"])
    global_model = _global_model(node, plan, round_number, bytes(config["model"]))
    previous = bytes(config["previous-model"])
    # The model the previous round started from, checked against the ledger like the global one; the
    # step itself is the task's, from its description on the ledger.
    before = last_closed_round(node.session.ledger, plan.task_id, round_number)
    step = plan.description.server_step(_global_model(node, plan, before, previous) if previous and before else None)
    if plan.custody is Custody.ESCROW:
        result = finish_opened(plan, node.session.ledger, node.session.store, round_number=round_number,
                               global_model=global_model, aggregate_data=bytes(config["aggregate"]),
                               master=str(config["master"]), opening=bytes(config["opening"]), step=step)
    else:
        partials = {str(m): bytes(p) for m, p in zip(config["members"], config["partials"]) if m}
        result = finish(plan, node.session.ledger, node.session.store, round_number=round_number,
                        global_model=global_model, aggregate_data=bytes(config["aggregate"]), partials=partials,
                        step=step)
    return _reply(message, {"model": result.model_data, "tx-id": result.tx_id,
                            "used": list(result.used_members) or [""],
                            "rejected": "; ".join(f"{m}: {r}" for m, r in result.rejected_members.items())})
