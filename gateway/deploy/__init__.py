"""The field deployer's tools: provision a station, build its bundle, deploy it to a board.

    lantian provision [--station ID | --prefix P] [--config] [--rotate]   (provision.py)
    lantian bundle STATION.json [--out DIR|FILE.tar]                       (bundle.py)
    lantian deploy --port PORT [--bundle DIR|FILE.tar]                     (deploy.py)

Each command module has ``main(argv) -> int`` (and ``configure_parser``/``run`` for a
parent parser); the board session lives in gateway/deploy/board.py. docs/deploying.md is
the deployer's page.
"""

from gateway.deploy.board import Board, BoardCommandError, BoardError, BoardInfo
from gateway.deploy.bundle import (
    BoardMpy,
    Bundle,
    BundleDamaged,
    BundleError,
    ConfigInvalid,
    KeyInvalid,
    MpyCrossError,
    MpyHeader,
    build_bundle,
    mpy_incompatibility,
    open_bundle,
    verify_bundle,
)
from gateway.deploy.deploy import (
    DeployRefused,
    DeployReport,
    IncompatibleBoard,
    VerifyFailed,
    WrongStation,
    deploy_bundle,
)
from gateway.deploy.provision import (
    BadStationId,
    Provisioned,
    ProvisionError,
    StationExists,
    provision_station,
)

__all__ = [
    "BadStationId",
    "Board",
    "BoardCommandError",
    "BoardError",
    "BoardInfo",
    "BoardMpy",
    "Bundle",
    "BundleDamaged",
    "BundleError",
    "ConfigInvalid",
    "DeployRefused",
    "DeployReport",
    "IncompatibleBoard",
    "KeyInvalid",
    "MpyCrossError",
    "MpyHeader",
    "ProvisionError",
    "Provisioned",
    "StationExists",
    "VerifyFailed",
    "WrongStation",
    "build_bundle",
    "deploy_bundle",
    "mpy_incompatibility",
    "open_bundle",
    "provision_station",
    "verify_bundle",
]
