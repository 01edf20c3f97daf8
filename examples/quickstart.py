"""Quickstart: a small order-analytics pipeline on the embedded SQLite default.

Run it with ``python examples/quickstart.py``. It materializes five assets (two of
them share a "warehouse" pool of 2 slots), then prints what ran, where, for how
long, and the report it produced. Storage lives in ``$RIVERS_HOME`` (default
``~/.rivers``), so ``rivers runs list`` shows the run afterwards.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import rivers as rs


@rs.Asset(description="Raw orders, as an export from the shop would give them.")
def orders() -> list[dict[str, object]]:
    rng = random.Random(7)
    customers = ["ada", "grace", "linus", "margaret", "ken"]
    return [
        {
            "order_id": n,
            "customer": rng.choice(customers),
            "amount": round(rng.uniform(5, 250), 2),
        }
        for n in range(1, 501)
    ]


@rs.Asset(pool="warehouse")
def revenue_by_customer(orders: list[dict[str, object]]) -> dict[str, float]:
    revenue: defaultdict[str, float] = defaultdict(float)
    for order in orders:
        revenue[str(order["customer"])] += float(str(order["amount"]))
    return {name: round(total, 2) for name, total in revenue.items()}


@rs.Asset(pool="warehouse")
def order_counts(orders: list[dict[str, object]]) -> dict[str, int]:
    return dict(Counter(str(order["customer"]) for order in orders))


@rs.Asset
def top_customers(revenue_by_customer: dict[str, float]) -> list[str]:
    ranked = sorted(revenue_by_customer, key=revenue_by_customer.__getitem__)
    return ranked[::-1][:3]


@rs.Asset(retry_policy=rs.RetryPolicy(max_retries=2, delay="100ms"))
async def report(
    context: rs.StepContext,
    top_customers: list[str],
    revenue_by_customer: dict[str, float],
    order_counts: dict[str, int],
) -> str:
    lines = [f"{'customer':<10} {'orders':>6} {'revenue':>10}"]
    for name in top_customers:
        lines.append(
            f"{name:<10} {order_counts[name]:>6} {revenue_by_customer[name]:>10.2f}"
        )
    context.log.info("report covers %d customers", len(top_customers))
    return "\n".join(lines)


repo = rs.CodeRepository(
    [orders, revenue_by_customer, order_counts, top_customers, report],
    pool_limits={"warehouse": 2},
)


def main() -> None:
    result = repo.materialize(tags={"example": "quickstart"})
    print(f"run {result.run_id}: {result.status.value}")
    for step in result.step_records:
        took = (
            f"{step.duration_s * 1000:.1f} ms" if step.duration_s is not None else "-"
        )
        print(f"  {step.step_key:<20} {step.status.value:<8} {took:>10}  {step.worker}")
    if result.success:
        print("\nTop customers by revenue:")
        print(result.output_for("report"))
    else:
        print(f"\nfailed: {result.error}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
