"""Connected components on Spark DataFrames: the large-star / small-star algorithm (Kiveris et al. 2014).

Edges stay distributed throughout; every iteration is checkpointed to cut the lineage, and nothing
proportional to the graph reaches the driver. A graph known to be small (`driver_max_edges`) is solved
by union-find on the driver instead: one collect, where the distributed algorithm needs a few jobs per
iteration. Both give every node the smallest node of its component and its degree (distinct neighbours),
so the outputs are identical.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ComponentsResult:
    assignment: object  # DataFrame(node, component, degree): every node of an edge, component = smallest node
    iterations: int
    count: int | None = None  # the number of components, when it is known without a job


def _large_star(edges, F):
    both = edges.unionByName(edges.select(F.col("v").alias("u"), F.col("u").alias("v")))
    mins = both.groupBy("u").agg(F.least(F.min("v"), F.col("u")).alias("m"))
    return (both.join(mins, "u").where(F.col("v") > F.col("u"))
            .select(F.col("v").alias("u"), F.least("m", "u").alias("v")).distinct())


def _small_star(edges, F):
    # edges are oriented u > v: attach u and its smaller neighbours to the smallest of them
    mins = edges.groupBy("u").agg(F.min("v").alias("m"))
    neighbours = edges.join(mins, "u").where(F.col("v") != F.col("m")).select(F.col("v").alias("u"), F.col("m").alias("v"))
    return neighbours.unionByName(mins.select("u", F.col("m").alias("v"))).distinct()


def connected_components(edges, max_iterations: int = 100, reliable: bool = False,
                         edge_count: int | None = None, driver_max_edges: int = 0) -> ComponentsResult:
    """Components of an undirected graph given as DataFrame(src, dst) of comparable node ids.

    `reliable` checkpoints to the SparkContext's checkpoint directory (survives a lost executor);
    otherwise checkpoints stay on the executors. An `edge_count` of 0 (known to the caller) skips
    every job; one of at most `driver_max_edges` is solved on the driver (0 iterations reported).
    Convergence is one job per iteration (both set differences at once).
    """
    from pyspark.sql import functions as F

    shape = edges.select(F.col("src").alias("node"), F.col("dst").alias("component"), F.lit(0).cast("long").alias("degree"))
    if edge_count == 0:
        return ComponentsResult(shape.limit(0), 0, 0)
    if edge_count is not None and edge_count <= driver_max_edges:
        pairs = [(r[0], r[1]) for r in edges.select("src", "dst").collect()]
        roots, degrees = smallest_member(pairs), _degrees(pairs)
        rows = sorted((node, root, degrees[node]) for node, root in roots.items())
        return ComponentsResult(edges.sparkSession.createDataFrame(rows, shape.schema), 0, len(set(roots.values())))
    current = (edges.where(F.col("src") != F.col("dst"))
               .select(F.greatest("src", "dst").alias("u"), F.least("src", "dst").alias("v")).distinct())
    current = _checkpoint(current, reliable)
    for iteration in range(1, max_iterations + 1):
        updated = _checkpoint(_small_star(_large_star(current, F), F), reliable)
        converged = updated.exceptAll(current).unionByName(current.exceptAll(updated)).isEmpty()
        current = updated
        if converged:
            roots = current.select(F.col("v").alias("node"), F.col("v").alias("component")).distinct()
            assignment = current.select(F.col("u").alias("node"), F.col("v").alias("component")).unionByName(roots)
            return ComponentsResult(assignment.join(_degree_frame(edges, F), "node"), iteration)
    raise RuntimeError(f"connected components did not converge in {max_iterations} iterations")


def smallest_member(pairs: list[tuple]) -> dict:
    """Union-find over edge pairs: each node of a (non-loop) edge -> the smallest node of its component."""
    parent: dict = {}

    def root(node):
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]  # path halving
            node = parent[node]
        return node

    for a, b in pairs:
        if a != b:
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)  # the smaller root wins, so a root is its component's minimum
    return {node: root(node) for node in parent}


def _degrees(pairs: list[tuple]) -> dict:
    """Distinct neighbours of each node (loops and repeated or reversed edges count once)."""
    degree: dict = {}
    for a, b in {(min(a, b), max(a, b)) for a, b in pairs if a != b}:
        degree[a] = degree.get(a, 0) + 1
        degree[b] = degree.get(b, 0) + 1
    return degree


def _degree_frame(edges, F):
    """DataFrame(node, degree): `_degrees` on Spark."""
    undirected = (edges.where(F.col("src") != F.col("dst"))
                  .select(F.least("src", "dst").alias("a"), F.greatest("src", "dst").alias("b")).distinct())
    ends = undirected.select(F.col("a").alias("node")).unionAll(undirected.select(F.col("b").alias("node")))
    return ends.groupBy("node").agg(F.count("*").alias("degree"))


def _checkpoint(df, reliable: bool):
    """Both kinds cut the lineage, which otherwise grows with every iteration."""
    if reliable:
        return df.checkpoint(eager=True)
    return df.localCheckpoint(eager=True)
