"""Dataset loaders for physiological records (WFDB) and audio, with small embedded samples.

Every loader follows scikit-learn's ``load_*`` convention: it returns a
:class:`sklearn.utils.Bunch` (``data``, ``target``, ``sampling_rate``, ``groups``,
``target_names``, ``DESCR``) or ``(X, y)`` with ``return_X_y=True``. ``root=None`` reads the
small real samples shipped in the package (see ``_embedded/LICENSES.md``); a path reads a full
copy on disk. No loader touches the network.
"""
from ._audio import load_audio_folder
from ._bidmc import load_bidmc
from ._challenge import load_physionet_challenge
from ._fsdd import load_fsdd
from ._mitbih import AAMI_CLASSES, DS1, DS2, load_mitbih
from ._wfdb import load_wfdb

__all__ = ["AAMI_CLASSES", "DS1", "DS2", "load_audio_folder", "load_bidmc", "load_fsdd",
           "load_mitbih", "load_physionet_challenge", "load_wfdb"]
