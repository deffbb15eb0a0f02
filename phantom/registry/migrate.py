"""Move an embedded SQLite MLflow store (and its local artifacts) into a tracking server's PostgreSQL store.

Everything is copied row by row with MLflow's own table definitions, so ids survive: experiment
ids, run ids, logged-model ids, registered models, version numbers, tags, descriptions and the
`champion` / `challenger` aliases come out exactly as they went in. Artifact URIs under the source
artifact root (`file:///<repo>/mlruns/...`) are rewritten to the server's `mlflow-artifacts:/...`
and the files are copied to the server's `--artifacts-destination`.

Nothing is deleted and the source is never written: the migration reads a temporary copy of the
SQLite file upgraded to the running MLflow's schema. It stops, before writing anything, when the
destination already holds runs or registered models, or when the source has a table this MLflow
does not know. Run it with the tracking server stopped (or before first starting it):

    python -m phantom.registry.migrate --source sqlite:///mlflow.db \
        --dest postgresql://phantom@127.0.0.1:5432/phantom_mlflow --artifacts-to mlartifacts
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# columns that hold artifact locations, by table
URI_COLUMNS: dict[str, tuple[str, ...]] = {
    "experiments": ("artifact_location",),
    "runs": ("artifact_uri",),
    "logged_models": ("artifact_location",),
    "model_versions": ("source", "storage_location"),
}
SERVED_SCHEME = "mlflow-artifacts:"
CHUNK_ROWS = 5000


class MigrationError(RuntimeError):
    """The migration cannot proceed safely; nothing was written to the destination."""


@dataclass
class MigrationReport:
    """Rows per table (source, copied, already in the destination) and the artifact files copied."""

    tables: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    artifact_files: int = 0
    local_uris_left: list[str] = field(default_factory=list)  # artifact URIs outside the source root

    def summary(self) -> str:
        """One line per non-empty table and the artifact count."""
        lines = [f"{t}: {s} rows, {c} copied, {k} already there" for t, (s, c, k) in self.tables.items() if s]
        lines.append(f"artifact files copied: {self.artifact_files}")
        if self.local_uris_left:
            lines.append(f"artifact URIs left pointing at local paths: {len(self.local_uris_left)}")
        return "\n".join(lines)


def rewrite_uri(value: Any, source_root: str, served_root: str = SERVED_SCHEME) -> Any:
    """`file:///repo/mlruns/x/y` -> `mlflow-artifacts:/x/y` when under `source_root` (pure; others unchanged)."""
    if not isinstance(value, str):
        return value
    root = source_root.rstrip("/")
    if value == root:
        return served_root + "/"
    if value.startswith(root + "/"):
        return served_root + value[len(root) :]
    return value


def _metadata() -> Any:
    import mlflow.store.model_registry.dbmodels.models  # registers the registry tables
    import mlflow.store.tracking.dbmodels.models  # noqa: F401  (registers the tracking tables)
    from mlflow.store.db.base_sql_model import Base

    return Base.metadata


def upgraded_copy(sqlite_path: Path, workdir: Path) -> Path:
    """A copy of the SQLite store (sqlite3 backup API: consistent even if open) upgraded to this MLflow's schema."""
    from mlflow.store.db.utils import _upgrade_db, create_sqlalchemy_engine_with_retry

    if not sqlite_path.is_file():
        raise MigrationError(f"{sqlite_path}: no such SQLite store")
    copy = workdir / "source.db"
    try:
        src = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
        dst = sqlite3.connect(copy)
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
        engine = create_sqlalchemy_engine_with_retry(f"sqlite:///{copy}")
        _upgrade_db(engine)
        engine.dispose()
    except Exception as exc:  # a corrupt or foreign file: say which, write nothing anywhere
        raise MigrationError(
            f"{sqlite_path}: not a readable MLflow SQLite store ({type(exc).__name__}: {exc})"
        ) from exc
    return copy


def _destination_engine(dest_uri: str) -> Any:
    """Engine on the destination with MLflow's schema created or upgraded (what `mlflow server` does)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(dest_uri, tempfile.mkdtemp(prefix="mlflow-migrate-"))
    return store.engine


def _check_destination_empty(engine: Any) -> None:
    import sqlalchemy as sa

    with engine.connect() as conn:
        for table in ("runs", "registered_models", "logged_models"):
            n = conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar()
            if n:
                raise MigrationError(
                    f"destination already holds {n} rows in {table}: migrate only into a fresh store "
                    "(nothing was written)"
                )


def _check_known_tables(engine: Any, metadata: Any) -> list[str]:
    """Tables of the source: every one must be MLflow's (alembic_version and workspaces aside)."""
    import sqlalchemy as sa

    names = sa.inspect(engine).get_table_names()
    unknown = sorted(set(names) - set(metadata.tables) - {"alembic_version", "workspaces"})
    if unknown:
        raise MigrationError(f"source has tables this MLflow does not know: {unknown} (nothing was written)")
    return names


def _rows(conn: Any, table: Any) -> Iterator[list[dict[str, Any]]]:
    result = conn.execute(table.select()).mappings()
    while chunk := result.fetchmany(CHUNK_ROWS):
        yield [dict(row) for row in chunk]


def _existing_keys(conn: Any, table: Any) -> set[tuple[Any, ...]]:
    import sqlalchemy as sa

    pk = list(table.primary_key.columns)
    if not pk:
        return set()
    return {tuple(r) for r in conn.execute(sa.select(*pk))}


def _reset_sequences(conn: Any, metadata: Any) -> None:
    """After inserting explicit ids, move PostgreSQL serial sequences past them."""
    import sqlalchemy as sa

    if conn.dialect.name != "postgresql":
        return
    for table in metadata.sorted_tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not isinstance(pk[0].type, sa.Integer):
            continue
        seq = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": pk[0].name})
        name = seq.scalar()
        if name:
            conn.execute(
                sa.text(f"SELECT setval(:s, COALESCE((SELECT MAX({pk[0].name}) FROM {table.name}), 0) + 1, false)"),
                {"s": name},
            )


def copy_artifacts(source_dir: Path, dest_dir: Path) -> int:
    """Copy the artifact tree (files only added, nothing overwritten or removed); return the file count."""
    if not source_dir.is_dir():
        return 0
    count = 0
    for path in sorted(source_dir.rglob("*")):
        if not path.is_file():
            continue
        target = dest_dir / path.relative_to(source_dir)
        if target.exists():
            if target.stat().st_size != path.stat().st_size:
                raise MigrationError(f"{target} exists with other content: refusing to overwrite")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        count += 1
    return count


def migrate(
    source_db: Path,
    dest_uri: str,
    artifacts_from: Path | None,
    artifacts_to: Path | None,
    progress: Callable[[str], None] = print,
) -> MigrationReport:
    """Copy every row of the SQLite store at `source_db` into `dest_uri`; artifacts from one dir to another."""
    import sqlalchemy as sa
    from tqdm import tqdm

    metadata = _metadata()
    report = MigrationReport()
    source_root = artifacts_from.resolve().as_uri() if artifacts_from else None
    with tempfile.TemporaryDirectory(prefix="mlflow-migrate-") as tmp:
        copy = upgraded_copy(Path(source_db), Path(tmp))
        src_engine = sa.create_engine(f"sqlite:///{copy}")
        present = set(_check_known_tables(src_engine, metadata))
        dst_engine = _destination_engine(dest_uri)
        _check_destination_empty(dst_engine)
        if artifacts_from and artifacts_to:
            report.artifact_files = copy_artifacts(artifacts_from, artifacts_to)
            progress(f"copied {report.artifact_files} artifact files {artifacts_from} -> {artifacts_to}")
        tables = [t for t in metadata.sorted_tables if t.name in present]
        with src_engine.connect() as src, dst_engine.begin() as dst:
            for table in tqdm(tables, desc="tables", unit="table"):
                keys = _existing_keys(dst, table)
                pk = [c.name for c in table.primary_key.columns]
                seen = copied = kept = 0
                for chunk in _rows(src, table):
                    seen += len(chunk)
                    fresh = []
                    for row in chunk:
                        if keys and tuple(row[c] for c in pk) in keys:
                            kept += 1  # e.g. the fresh store's Default experiment: keep the destination's
                            continue
                        for col in URI_COLUMNS.get(table.name, ()):
                            value = row.get(col)
                            new = rewrite_uri(value, source_root) if source_root else value
                            if isinstance(value, str) and new == value and value.startswith("file:"):
                                report.local_uris_left.append(value)
                            row[col] = new
                        fresh.append(row)
                    if fresh:
                        dst.execute(table.insert(), fresh)
                        copied += len(fresh)
                report.tables[table.name] = (seen, copied, kept)
            _reset_sequences(dst, metadata)
        src_engine.dispose()
        dst_engine.dispose()
    for name, (seen, copied, kept) in report.tables.items():
        if seen != copied + kept:  # pragma: no cover, a guard: every source row is accounted for
            raise MigrationError(f"{name}: {seen} source rows but {copied} copied and {kept} kept")
    return report


def main(argv: list[str] | None = None) -> MigrationReport:
    """CLI: migrate, then print the per-table counts."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="sqlite:///mlflow.db", help="sqlite:///path of the embedded store")
    parser.add_argument("--dest", required=True, help="SQLAlchemy URI of the server's backend store")
    parser.add_argument("--artifacts-from", type=Path, help="default: mlruns/ next to the SQLite file")
    parser.add_argument("--artifacts-to", type=Path, required=True, help="the server's --artifacts-destination")
    args = parser.parse_args(argv)
    if not args.source.startswith("sqlite:///"):
        raise SystemExit(f"--source {args.source}: only sqlite:/// stores are migrated")
    db = Path(args.source.removeprefix("sqlite:///"))
    artifacts_from = args.artifacts_from or db.resolve().parent / "mlruns"
    try:
        report = migrate(db, args.dest, artifacts_from, args.artifacts_to)
    except MigrationError as exc:
        raise SystemExit(f"migrate: {exc}") from None
    print(report.summary())
    return report


if __name__ == "__main__":
    main()
