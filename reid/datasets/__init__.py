"""Video re-id datasets: layout parsers, LMDB frame store, tracklet index, reader, generator.

docs/DESIGN.md §4. Typical use:

    from reid.datasets import open_dataset
    with open_dataset('data/mars') as ds:
        seq = ds.read(ds.query_idx[0], length=6, size=(227, 227))

Modules: layout (parsed layouts, LayoutError), index (Tracklet, TrackletIndex), lmdb_store
(encoded-Datum LMDB, atomic writer), build (layout -> LMDB + index), mars / ilidsvid /
prid2011 (the official layouts), synthetic (generator of those layouts), reader
(SequenceDataset, Prefetcher).
"""
from .index import Tracklet, TrackletIndex
from .layout import LayoutError, SourceDataset, SourceTracklet
from .reader import Prefetcher, SequenceDataset, ShortTrackletError, open_dataset

__all__ = ['open_dataset', 'SequenceDataset', 'Prefetcher', 'ShortTrackletError', 'Tracklet',
           'TrackletIndex', 'LayoutError', 'SourceDataset', 'SourceTracklet']
