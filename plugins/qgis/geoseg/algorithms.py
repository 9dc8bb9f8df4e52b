"""The geoseg Processing algorithms: each builds a ``geoseg`` command line and runs it.

Rasters are handed to geoseg as their files (geoseg reads them with GDAL itself); vectors that
are not plain files (memory layers, selections, database tables) are exported to a temporary
GeoPackage first. Results are written by geoseg into a temporary folder and then copied to the
Processing destinations, keeping the input layer's CRS (no reprojection).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureRequest,
    QgsFields,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputMultipleLayers,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDistance,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingUtils,
    QgsProviderRegistry,
    QgsUnitTypes,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)

from .config import configured_executable
from .runner import run_geoseg

#: Vector formats geoseg writes (``geoseg run --format``).
GEOSEG_FORMATS = ["gpkg", "shp", "geojson"]
#: File extensions of the vector files geoseg writes.
VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson")
#: Longest side (pixels) of the overlay PNG: scenes are read decimated to it.
OVERLAY_MAX_SIZE = 2048


class GeosegAlgorithm(QgsProcessingAlgorithm):
    """Shared plumbing: input checks, the geoseg call, temporary folders, layer copies."""

    NAME = ""
    DISPLAY_NAME = ""
    GROUP = ""

    def name(self) -> str:  # noqa: D102
        return self.NAME

    def displayName(self) -> str:  # noqa: D102
        return self.DISPLAY_NAME

    def group(self) -> str:  # noqa: D102
        return self.GROUP

    def groupId(self) -> str:  # noqa: D102
        return self.GROUP.lower().replace(" ", "_")

    def createInstance(self) -> "GeosegAlgorithm":  # noqa: D102 - QgsProcessingAlgorithm API
        return type(self)()

    def scene_file(
        self, parameters: Dict[str, Any], name: str, context: QgsProcessingContext
    ) -> Tuple[str, QgsCoordinateReferenceSystem]:
        """The file behind raster parameter ``name`` and the layer's CRS.

        Raises
        ------
        QgsProcessingException
            When the layer is not a raster file GDAL reads from disk (memory, WMS, database...).
        """
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, name))
        path = layer.source()
        if layer.providerType() != "gdal" or not os.path.isfile(path):
            raise QgsProcessingException(
                f"Layer '{layer.name()}' is not a raster file on disk (provider '{layer.providerType()}'); "
                "geoseg reads rasters from files. Save it as a GeoTIFF first (Raster > Conversion > "
                "Translate) and use that file."
            )
        return self._with_layer_crs(path, layer), layer.crs()

    @staticmethod
    def _with_layer_crs(path: str, layer: Any) -> str:
        """``path``, or a VRT beside the session's temporary files giving it the CRS set on the layer in QGIS.

        A file without a CRS would give centerlines in pixel coordinates (x = column, y = row),
        which the layer's CRS must not label. A CRS set on the layer (Layer > Set CRS) is passed
        on through a VRT when the file has a geotransform; without one, or without any CRS,
        the run is refused unless the file has neither (a plain image: pixel coordinates).

        Raises
        ------
        QgsProcessingException
            A file with a geotransform and no CRS, or with a CRS set in QGIS and no geotransform.
        """
        from osgeo import gdal

        dataset = gdal.Open(path)
        if dataset is None:
            return path
        projection, transform = dataset.GetProjection(), dataset.GetGeoTransform(can_return_null=True)
        dataset = None  # closed now: a dataset left to the interpreter's exit crashes QGIS
        if projection:
            return path
        placed = transform is not None and tuple(transform) != (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        crs = layer.crs()
        if placed and crs.isValid():
            folder = tempfile.mkdtemp(prefix="geoseg_crs_", dir=QgsProcessingUtils.tempFolder())
            vrt = os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + ".vrt")  # the scene's stem names the outputs
            written = gdal.Translate(vrt, path, format="VRT", outputSRS=crs.toWkt())
            written = None  # noqa: F841 - closing writes the VRT
            return vrt
        if placed:
            raise QgsProcessingException(
                f"Layer '{layer.name()}' ({path}) has no CRS: geoseg would give its centerlines in pixel coordinates, "
                "which would not overlay it. Set its CRS (Layer > Layer CRS > Set Layer CRS) and run again."
            )
        if crs.isValid():
            raise QgsProcessingException(
                f"Layer '{layer.name()}' ({path}) has no georeferencing in its file (no geotransform): geoseg would give its "
                "centerlines in pixel coordinates, which its CRS cannot label. Georeference it first (Raster > Georeferencer)."
            )
        return path

    @staticmethod
    @contextmanager
    def naming_export(export: str, layer: str) -> Iterator[None]:
        """geoseg's errors about ``export`` (a layer the plugin wrote to a temporary file) name the user's ``layer`` instead."""
        try:
            yield
        except QgsProcessingException as exc:
            raise QgsProcessingException(str(exc).replace(export, f"layer '{layer}'")) from None

    @staticmethod
    def check_features(source: Any, parameters: Dict[str, Any], name: str) -> str:
        """The layer's name for messages; refuses a layer (or selection) without features before any work."""
        layer = parameters.get(name)
        label = getattr(layer, "name", lambda: None)() or source.sourceName() or str(layer)
        if source.featureCount() == 0:
            raise QgsProcessingException(f"Layer '{label}' has no features (an empty layer, or an empty selection): nothing to train on")
        return label

    def geoseg(self, args: List[str], feedback: QgsProcessingFeedback) -> List[dict]:
        """Run ``geoseg args...`` (see :func:`runner.run_geoseg`) with the configured executable."""
        return run_geoseg(configured_executable(), args, feedback)

    @staticmethod
    def written_files(events: List[dict]) -> List[str]:
        """The files that ``geoseg run --progress json`` reported as written."""
        return [path for event in events if event.get("status") == "done" for path in event.get("outputs") or []]

    def overlay_parameter(self, name: str) -> QgsProcessingParameterFileDestination:
        """The optional "Overlay PNG" destination (not created unless asked for)."""
        return QgsProcessingParameterFileDestination(
            name, "Overlay PNG (network drawn over the scene)", "PNG image (*.png)", optional=True, createByDefault=False
        )

    def overlay_destination(self, parameters: Dict[str, Any], name: str, context: QgsProcessingContext) -> str:
        """The overlay PNG destination (empty: none), checked before any work: ``.png`` is added to a name without extension."""
        destination = self.parameterAsFileOutput(parameters, name, context)
        if not destination:
            return destination
        extension = os.path.splitext(destination)[1].lower()
        if not extension:
            return destination + ".png"
        if extension != ".png":
            raise QgsProcessingException(f"The overlay is a PNG image: name it .png, not {extension} ({destination})")
        return destination

    def write_overlay(
        self, scene: str, written: List[str], destination: str, feedback: QgsProcessingFeedback
    ) -> Optional[str]:
        """Run ``geoseg overlay SCENE NETWORK -o DESTINATION`` on the first vector file geoseg wrote.

        The overlay is a view of the result: when it cannot be drawn, this is reported and the
        result stands (None is returned).
        """
        network = next((path for path in written if os.path.splitext(path)[1].lower() in VECTOR_SUFFIXES), None)
        try:
            if network is None:
                raise QgsProcessingException("the pipeline wrote no vector network to draw over the scene")
            self.geoseg(["overlay", scene, network, "-o", destination, "--max-size", str(OVERLAY_MAX_SIZE)], feedback)
            if not os.path.isfile(destination):
                raise QgsProcessingException(f"geoseg finished but wrote no overlay at {destination}")
        except QgsProcessingException as exc:
            feedback.reportError(f"No overlay PNG: {exc}; the other outputs are complete", False)
            return None
        return destination


@contextmanager
def work_folder() -> Iterator[str]:
    """A temporary folder inside the Processing temporary folder, removed afterwards."""
    folder = tempfile.mkdtemp(prefix="geoseg_", dir=QgsProcessingUtils.tempFolder())
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


#: A "Save to GeoPackage" destination with a table name: ``ogr:dbname='/p/db.gpkg' table="roads" (geom)``.
_OGR_TABLE = re.compile(r"""^ogr:dbname='(?P<path>[^']+)' table="(?P<table>[^"]+)"(?: \([^)]*\))?$""")


def copy_vector_layer(
    source_uri: str,
    destination: str,
    crs: QgsCoordinateReferenceSystem,
    context: QgsProcessingContext,
    geometry_type: Optional[int] = None,
) -> None:
    """Copy the layer ``source_uri`` (``file|layername=NAME``) to ``destination`` with GDAL, as geoseg writes it.

    ``destination`` is a file (format from its extension; replaced if it exists) or a
    GeoPackage table (``ogr:dbname='...' table="..."``, added to or replaced in that file).
    Fields keep geoseg's types (integers stay integers in a shapefile). Coordinates are
    copied as they are; the copy is labelled with ``crs`` (the input raster layer's CRS, in
    which geoseg's coordinates are expressed) when that is valid. An empty layer without a
    geometry type (geoseg writes empty layers as "any geometry") is written as
    ``geometry_type`` (a ``QgsWkbTypes`` type) when that is given, so that an empty result is
    still a line or point layer in every format.
    """
    from osgeo import gdal, ogr

    source, _, layer_name = source_uri.partition("|layername=")
    table = _OGR_TABLE.match(destination)
    path = table["path"] if table else destination
    source_ds = gdal.OpenEx(source, gdal.OF_VECTOR)
    layer = source_ds.GetLayerByName(layer_name) if source_ds is not None else None
    if layer is None:
        raise QgsProcessingException(f"geoseg wrote no readable layer at {source_uri}")
    untyped = layer.GetGeomType() in (ogr.wkbUnknown, ogr.wkbNone) and layer.GetFeatureCount() == 0
    driver = QgsVectorFileWriter.driverForExtension(os.path.splitext(path)[1]) or "GPKG"
    options: Dict[str, Any] = {"format": driver, "layers": [layer_name], "layerName": table["table"] if table else os.path.splitext(os.path.basename(path))[0]}
    if crs.isValid():
        options.update(dstSRS=crs.toWkt(), reproject=False)
    if geometry_type is not None and untyped:
        options["geometryType"] = QgsWkbTypes.displayString(geometry_type).upper()
    if table and os.path.exists(path):
        options.update(accessMode="overwrite")  # this table replaced, the file's other tables kept
    elif os.path.exists(path):
        gdal.GetDriverByName(driver).Delete(path)
    written = gdal.VectorTranslate(path, source_ds, options=gdal.VectorTranslateOptions(**options))
    message = gdal.GetLastErrorMsg()
    layer = source_ds = None  # noqa: F841 - closed before QGIS reads the copy
    if written is None:
        raise QgsProcessingException(f"Could not write {destination}: {message}")
    written = None  # noqa: F841 - closing flushes the copy


class ExtractCenterlinesAlgorithm(GeosegAlgorithm):
    """Road centerlines from a road mask, or from a scene with an MJCR model."""

    INPUT = "INPUT"
    MODEL = "MODEL"
    MAX_GAP = "MAX_GAP"
    OUTPUT = "OUTPUT"
    NODES = "NODES"
    OVERLAY = "OVERLAY"

    NAME = "extract_centerlines"
    DISPLAY_NAME = "Extract road centerlines"
    GROUP = "Road extraction"

    def shortHelpString(self) -> str:  # noqa: D102
        return (
            "Extracts a road centerline network (lines, and optionally its junction and end nodes).\n\n"
            "Without a model file the input raster is a road mask (band 1, road where the value is "
            "above 0) and geoseg's 'mask_to_centerlines' pipeline is run. With an MJCR model file "
            "(from 'Train MJCR road classifier') the input is an image scene and the full "
            "'road_centerlines' pipeline is run.\n\n"
            "Gaps up to the maximum gap (metres) between collinear road ends are bridged. "
            "Outputs keep the input layer's CRS.\n\n"
            "Optionally an overlay PNG shows the network over the scene (edges coloured by "
            "confidence, junctions and dead ends marked; at most 2048 pixels wide)."
        )

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: D102
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Road mask or image scene"))
        self.addParameter(
            QgsProcessingParameterFile(
                self.MODEL,
                "MJCR model file (empty: the input is a road mask)",
                behavior=QgsProcessingParameterFile.File,
                fileFilter="geoseg model (*.npz);;All files (*.*)",
                optional=True,
            )
        )
        max_gap = QgsProcessingParameterDistance(
            self.MAX_GAP, "Maximum gap to bridge (m; empty: twice the road width measured on the scene, as geoseg's CLI)",
            None, optional=True, minValue=0.0,
        )
        max_gap.setDefaultUnit(QgsUnitTypes.DistanceMeters)
        self.addParameter(max_gap)
        self.addParameter(
            QgsProcessingParameterVectorDestination(self.OUTPUT, "Road centerlines", QgsProcessing.TypeVectorLine)
        )
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.NODES, "Road nodes (junctions and ends)", QgsProcessing.TypeVectorPoint, optional=True,
                createByDefault=False,
            )
        )
        self.addParameter(self.overlay_parameter(self.OVERLAY))

    def processAlgorithm(
        self, parameters: Dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> Dict[str, Any]:
        """Run the pipeline into a temporary GeoPackage and copy its layers to the destinations."""
        scene, crs = self.scene_file(parameters, self.INPUT, context)
        model = self.parameterAsFile(parameters, self.MODEL, context)
        max_gap_given = self.parameterAsString(parameters, self.MAX_GAP, context).strip() != ""
        max_gap = self.parameterAsDouble(parameters, self.MAX_GAP, context)
        edges_destination = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        nodes_destination = self.parameterAsOutputLayer(parameters, self.NODES, context)
        overlay_destination = self.overlay_destination(parameters, self.OVERLAY, context)

        pipeline = "road_centerlines" if model else "mask_to_centerlines"
        overrides = ([f"max_gap_m={max_gap!r}"] if max_gap_given else []) + ([f"model={model}"] if model else [])
        with work_folder() as folder:
            args = ["run", pipeline, scene, "-o", folder, "--format", "gpkg", "--progress", "json"]
            for override in overrides:
                args += ["--set", override]
            written = self.written_files(self.geoseg(args, feedback))
            if not written:
                raise QgsProcessingException("geoseg reported no output file")
            copy_vector_layer(f"{written[0]}|layername=edges", edges_destination, crs, context)
            results = {self.OUTPUT: edges_destination}
            if nodes_destination:
                copy_vector_layer(f"{written[0]}|layername=nodes", nodes_destination, crs, context)
                results[self.NODES] = nodes_destination
            overlay = self.write_overlay(scene, written, overlay_destination, feedback) if overlay_destination else None
            if overlay:
                results[self.OVERLAY] = overlay
        return results


class TrainMjcrAlgorithm(GeosegAlgorithm):
    """Train an MJCR road classifier from labelled samples (``geoseg train mjcr``)."""

    INPUT = "INPUT"
    SAMPLES = "SAMPLES"
    CLASS_FIELD = "CLASS_FIELD"
    OUTPUT = "OUTPUT"

    NAME = "train_mjcr"
    DISPLAY_NAME = "Train MJCR road classifier"
    GROUP = "Training"

    def shortHelpString(self) -> str:  # noqa: D102
        return (
            "Trains an MJCR road classifier on an image scene from labelled samples (points, lines "
            "or polygons) and writes a model file for 'Extract road centerlines'.\n\n"
            "The class field holds 1 for road and 0 for background. Samples are reprojected to "
            "the scene's CRS when they are in another one."
        )

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: D102
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Image scene"))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.SAMPLES,
                "Labelled samples",
                [QgsProcessing.TypeVectorPoint, QgsProcessing.TypeVectorLine, QgsProcessing.TypeVectorPolygon],
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.CLASS_FIELD, "Class field (1 = road, 0 = background)", parentLayerParameterName=self.SAMPLES,
                type=QgsProcessingParameterField.Numeric,
            )
        )
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Model file", "geoseg model (*.npz)"))

    def processAlgorithm(
        self, parameters: Dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> Dict[str, Any]:
        """Export the samples (class field only, scene CRS) to a GeoPackage and run the trainer."""
        scene, crs = self.scene_file(parameters, self.INPUT, context)
        source = self.parameterAsSource(parameters, self.SAMPLES, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.SAMPLES))
        label = self.check_features(source, parameters, self.SAMPLES)
        field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
        model = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        with work_folder() as folder:
            samples = os.path.join(folder, "samples.gpkg")
            self.export_samples(source, field, crs, samples, context, feedback)
            with self.naming_export(samples, label):
                self.geoseg(["train", "mjcr", "--image", scene, "--samples", samples, "--class-field", field, "-o", model], feedback)
        if not os.path.isfile(model):
            raise QgsProcessingException(f"geoseg finished but wrote no model file at {model}")
        return {self.OUTPUT: model}

    @staticmethod
    def export_samples(
        source: Any,
        field: Optional[str],
        crs: QgsCoordinateReferenceSystem,
        path: str,
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> None:
        """Write ``source``'s geometries and its ``field`` (if any) to the GeoPackage ``path`` in ``crs``."""
        fields = QgsFields()
        index = -1
        if field:
            index = source.fields().lookupField(field)
            if index < 0:
                raise QgsProcessingException(f"The layer has no field '{field}'")
            fields.append(source.fields().at(index))
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName = "GPKG"
        target_crs = crs if crs.isValid() else source.sourceCrs()
        writer = QgsVectorFileWriter.create(path, fields, source.wkbType(), target_crs, context.transformContext(), options)
        if writer.hasError() != QgsVectorFileWriter.NoError:
            raise QgsProcessingException(f"Could not write the samples: {writer.errorMessage()}")
        request = QgsFeatureRequest().setSubsetOfAttributes([index] if index >= 0 else []).setDestinationCrs(target_crs, context.transformContext())
        for feature in source.getFeatures(request):
            if feedback.isCanceled():
                break
            copy = QgsFeature(fields)
            copy.setGeometry(feature.geometry())
            copy.setAttributes([feature.attribute(index)] if index >= 0 else [])
            writer.addFeature(copy)
        del writer  # flushes and closes the file


class TrainFromRoadMapAlgorithm(GeosegAlgorithm):
    """Train a road classifier from a road map: a line layer of road centerlines (``geoseg train ... --roads``)."""

    INPUT = "INPUT"
    ROADS = "ROADS"
    CLASSIFIER = "CLASSIFIER"
    WIDTH = "WIDTH"
    WIDTH_FIELD = "WIDTH_FIELD"
    IGNORE = "IGNORE"
    LABELLED_WITHIN = "LABELLED_WITHIN"
    OUTPUT = "OUTPUT"

    NAME = "train_from_road_map"
    DISPLAY_NAME = "Train road classifier from a road map"
    GROUP = "Training"
    #: (label, geoseg arguments before the options) of each classifier choice.
    CLASSIFIERS = (
        ("MJCR (seconds; for 'Extract road centerlines')", ["train", "mjcr"]),
        ("Deep DecoupleSegNet, road_decouple (CPU minutes; for the deep_road_centerlines pipeline)", ["train", "nn", "road_decouple"]),
        ("Deep, road_general: ImageNet encoder, for real imagery (about 15 CPU minutes; needs geoseg[pretrained])", ["train", "nn", "road_general"]),
    )

    def shortHelpString(self) -> str:  # noqa: D102
        return (
            "Trains a road classifier on an image scene from a road map: a line layer of road "
            "centerlines (OpenStreetMap, a national road layer, or lines you drew). Each road is "
            "drawn at its width in metres (the Width field, else the default width); a band of "
            "'Ignore band' metres on either side of each road's edge is left out of training, "
            "since a map's widths are approximate. If the map covers only part of the scene, set "
            "'Labelled within': only pixels that near a road are used. The lines are reprojected "
            "to the scene's CRS."
        )

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: D102
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Image scene"))
        self.addParameter(QgsProcessingParameterFeatureSource(self.ROADS, "Road centerlines", [QgsProcessing.TypeVectorLine]))
        self.addParameter(QgsProcessingParameterEnum(self.CLASSIFIER, "Classifier", options=[c[0] for c in self.CLASSIFIERS], defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.WIDTH, "Road width (m)", QgsProcessingParameterNumber.Double, 6.0, minValue=0.1))
        self.addParameter(
            QgsProcessingParameterField(
                self.WIDTH_FIELD, "Width field (metres; optional)", parentLayerParameterName=self.ROADS,
                type=QgsProcessingParameterField.Numeric, optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterNumber(self.IGNORE, "Ignore band (m)", QgsProcessingParameterNumber.Double, 1.0, minValue=0.0))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.LABELLED_WITHIN, "Labelled within (m of a road; 0: the whole scene)", QgsProcessingParameterNumber.Double, 0.0, minValue=0.0
            )
        )
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Model file", "geoseg model (*.npz)"))

    def processAlgorithm(
        self, parameters: Dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> Dict[str, Any]:
        """Export the roads (scene CRS, the width field only) to a GeoPackage and run the trainer."""
        scene, crs = self.scene_file(parameters, self.INPUT, context)
        source = self.parameterAsSource(parameters, self.ROADS, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.ROADS))
        label = self.check_features(source, parameters, self.ROADS)
        field = self.parameterAsString(parameters, self.WIDTH_FIELD, context) or None
        model = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        command = self.CLASSIFIERS[self.parameterAsEnum(parameters, self.CLASSIFIER, context)][1]
        options = ["--road-width-m", repr(self.parameterAsDouble(parameters, self.WIDTH, context)),
                   "--ignore-m", repr(self.parameterAsDouble(parameters, self.IGNORE, context))]  # fmt: skip
        within = self.parameterAsDouble(parameters, self.LABELLED_WITHIN, context)
        if within > 0:
            options += ["--labelled-within-m", repr(within)]
        with work_folder() as folder:
            roads = os.path.join(folder, "roads.gpkg")
            TrainMjcrAlgorithm.export_samples(source, field, crs, roads, context, feedback)
            if field:
                options += ["--width-field", field]
            with self.naming_export(roads, label):
                self.geoseg([*command, "--images", scene, "--roads", roads, *options, "-o", model], feedback)
        if not os.path.isfile(model):
            raise QgsProcessingException(f"geoseg finished but wrote no model file at {model}")
        return {self.OUTPUT: model}


class RunPipelineAlgorithm(GeosegAlgorithm):
    """Any geoseg pipeline (a YAML file or a shipped pipeline's name) on one scene, with free ``--set`` overrides."""

    PIPELINE = "PIPELINE"
    PIPELINE_NAME = "PIPELINE_NAME"
    INPUT = "INPUT"
    OVERRIDES = "OVERRIDES"
    FORMAT = "FORMAT"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OUTPUT_LAYERS = "OUTPUT_LAYERS"
    OVERLAY = "OVERLAY"

    NAME = "run_pipeline"
    DISPLAY_NAME = "Run geoseg pipeline"
    GROUP = "Road extraction"

    def shortHelpString(self) -> str:  # noqa: D102
        return (
            "Runs a geoseg pipeline on a raster and writes its outputs into the output folder as "
            "<input name>.<format>; every layer written is loaded.\n\n"
            "The pipeline is a YAML file (see 'geoseg validate'), or the name of a pipeline shipped "
            "with geoseg: road_centerlines, mask_to_centerlines, deep_road_centerlines, ... "
            "('geoseg pipelines' lists them; 'geoseg pipelines show NAME' prints one to copy and "
            "edit). Give one of the two.\n\n"
            "Parameter overrides are NAME=VALUE pairs separated by spaces, as 'geoseg run --set' "
            "takes them: pipeline parameters (max_gap_m=20, model=/path/roads.npz), engine "
            "settings (assume_gsd_m=0.5) or step fields (connect_network.simplify_m=1). Quote "
            "values with spaces: model='/my models/roads.npz'.\n\n"
            "Optionally an overlay PNG shows the network the pipeline wrote over the scene."
        )

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: D102
        self.addParameter(
            QgsProcessingParameterFile(
                self.PIPELINE, "Pipeline (YAML file)", behavior=QgsProcessingParameterFile.File,
                fileFilter="geoseg pipeline (*.yaml *.yml)", optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.PIPELINE_NAME, "…or a pipeline shipped with geoseg, by name (e.g. road_centerlines)", optional=True
            )
        )
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        self.addParameter(
            QgsProcessingParameterString(self.OVERRIDES, "Parameter overrides (NAME=VALUE ...)", optional=True)
        )
        self.addParameter(QgsProcessingParameterEnum(self.FORMAT, "Vector format", GEOSEG_FORMATS, defaultValue=0))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, "Output folder"))
        self.addParameter(self.overlay_parameter(self.OVERLAY))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.OUTPUT_LAYERS, "Layers written"))

    def pipeline_argument(self, parameters: Dict[str, Any], context: QgsProcessingContext) -> str:
        """The pipeline file, or the shipped pipeline's name; exactly one must be given."""
        path = self.parameterAsFile(parameters, self.PIPELINE, context).strip()
        name = self.parameterAsString(parameters, self.PIPELINE_NAME, context).strip()
        if bool(path) == bool(name):
            raise QgsProcessingException(
                "Give either a pipeline YAML file or the name of a shipped pipeline (e.g. road_centerlines), not "
                + ("both" if path else "neither")
            )
        return path or name

    def processAlgorithm(
        self, parameters: Dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> Dict[str, Any]:
        """Run the pipeline straight into the output folder and load every layer it wrote."""
        pipeline = self.pipeline_argument(parameters, context)
        scene, _ = self.scene_file(parameters, self.INPUT, context)
        overlay_destination = self.overlay_destination(parameters, self.OVERLAY, context)
        overrides = self.parse_overrides(self.parameterAsString(parameters, self.OVERRIDES, context))
        fmt = GEOSEG_FORMATS[self.parameterAsEnum(parameters, self.FORMAT, context)]
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        os.makedirs(folder, exist_ok=True)

        args = ["run", pipeline, scene, "-o", folder, "--format", fmt, "--progress", "json"]
        for override in overrides:
            args += ["--set", override]
        layers = []
        written = self.written_files(self.geoseg(args, feedback))
        for path in written:
            for sublayer in QgsProviderRegistry.instance().querySublayers(path):
                layers.append(sublayer.uri())
                details = QgsProcessingContext.LayerDetails(sublayer.name(), context.project(), self.OUTPUT_LAYERS)
                context.addLayerToLoadOnCompletion(sublayer.uri(), details)
        results = {self.OUTPUT_FOLDER: folder, self.OUTPUT_LAYERS: layers}
        overlay = self.write_overlay(scene, written, overlay_destination, feedback) if overlay_destination else None
        if overlay:
            results[self.OVERLAY] = overlay
        return results

    @staticmethod
    def parse_overrides(text: str) -> List[str]:
        """Split ``NAME=VALUE NAME=VALUE`` (shell quoting allowed) into ``--set`` values."""
        try:
            overrides = shlex.split(text or "")
        except ValueError as exc:
            raise QgsProcessingException(f"Cannot read the parameter overrides: {exc}") from exc
        malformed = [item for item in overrides if "=" not in item.strip("=")]
        if malformed:
            raise QgsProcessingException(f"Overrides must be NAME=VALUE; got: {', '.join(malformed)}")
        return overrides


class EvaluateNetworkAlgorithm(GeosegAlgorithm):
    """Completeness, correctness, quality and APLS of a road network against a reference."""

    INPUT = "INPUT"
    REFERENCE = "REFERENCE"
    BUFFER = "BUFFER"
    #: Output name -> (key in ``geoseg eval --json``, description).
    SCORES = {
        "COMPLETENESS": ("completeness", "Completeness"),
        "CORRECTNESS": ("correctness", "Correctness"),
        "QUALITY": ("quality", "Quality"),
        "APLS": ("apls", "APLS"),
    }

    NAME = "evaluate_network"
    DISPLAY_NAME = "Evaluate road network"
    GROUP = "Evaluation"

    def shortHelpString(self) -> str:  # noqa: D102
        return (
            "Scores a road network against a reference network ('geoseg eval'): completeness, "
            "correctness and quality (Wiedemann) with a buffer of the given half-width in metres "
            "(measured in a local UTM zone), and APLS (average path length similarity). All "
            "scores are in [0, 1], higher is better."
        )

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: D102
        self.addParameter(
            QgsProcessingParameterFeatureSource(self.INPUT, "Road network", [QgsProcessing.TypeVectorLine])
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(self.REFERENCE, "Reference network", [QgsProcessing.TypeVectorLine])
        )
        buffer = QgsProcessingParameterDistance(self.BUFFER, "Buffer half-width (m)", 2.0, minValue=0.01)
        buffer.setDefaultUnit(QgsUnitTypes.DistanceMeters)
        self.addParameter(buffer)
        for name, (_, description) in self.SCORES.items():
            self.addOutput(QgsProcessingOutputNumber(name, description))

    def processAlgorithm(
        self, parameters: Dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> Dict[str, Any]:
        """Hand both networks to ``geoseg eval --json`` as files and return its scores."""
        formats = ["gpkg", "shp", "geojson"]
        prediction = self.parameterAsCompatibleSourceLayerPath(parameters, self.INPUT, context, formats, "gpkg", feedback)
        reference = self.parameterAsCompatibleSourceLayerPath(parameters, self.REFERENCE, context, formats, "gpkg", feedback)
        buffer_m = self.parameterAsDouble(parameters, self.BUFFER, context)
        objects = self.geoseg(["eval", prediction, reference, "--buffer-m", repr(buffer_m), "--json"], feedback)
        scores = next((obj for obj in reversed(objects) if "completeness" in obj), None)
        if scores is None:
            raise QgsProcessingException("geoseg eval printed no scores")
        results = {name: scores.get(key) for name, (key, _) in self.SCORES.items()}
        feedback.pushInfo(", ".join(f"{key} {scores.get(key)}" for key, _ in self.SCORES.values()))
        return results


class CompareWithRoadMapAlgorithm(GeosegAlgorithm):
    """What a road network says is different from a road map: new, missing and matched roads, and links (``geoseg compare``)."""

    INPUT = "INPUT"
    MAP = "MAP"
    IMAGE = "IMAGE"
    TOLERANCE = "TOLERANCE"
    WIDTH = "WIDTH"
    NEW = "NEW"
    MISSING = "MISSING"
    MATCHED = "MATCHED"
    LINKS = "LINKS"
    #: Output name -> (layer of ``<stem>_changes.gpkg`` written by ``geoseg compare --format gpkg``, description).
    LAYERS = {
        "NEW": ("new", "New roads (in the network, not in the map)"),
        "MISSING": ("missing", "Missing roads (in the map, not in the network)"),
        "MATCHED": ("matched", "Matched roads (map roads confirmed, with their offset)"),
        "LINKS": ("links", "Links (new and broken connections between map junctions)"),
    }

    NAME = "compare_with_road_map"
    DISPLAY_NAME = "Compare a road network with a road map"
    GROUP = "Map updating"

    def shortHelpString(self) -> str:  # noqa: D102
        return (
            "Compares a road network (e.g. from 'Extract road centerlines') with an existing road "
            "map (OpenStreetMap, a national road layer, last year's network) and writes what "
            "changed ('geoseg compare'). Two roads are the same where they run within the "
            "tolerance of each other in about the same direction. Outputs are in the network's "
            "CRS (the scene's when a scene is given); the map may be in any CRS and is "
            "reprojected.\n\n"
            "New: network roads with no map road near them (candidate additions). length_m "
            "(metres), confidence (the extraction's, 0-1).\n"
            "Missing: map roads with no network road near them (candidate removals, or roads "
            "hidden under trees). length_m, confidence (1 - road probability along it, when "
            "known), occluded (share under trees or in shadow, when known), map_id (feature "
            "number in the map, from 0).\n"
            "Matched: map roads confirmed by the network. length_m, offset_m and offset_max "
            "(mean and largest distance from the map to the network, metres: a map to "
            "realign), confidence, map_id.\n"
            "Links: routing changes between map junctions. kind (new_link: joined through the "
            "network by a path under half their map path; broken_link: a map road whose ends "
            "the network does not join, or only by a 2x detour), map_m and image_m (path "
            "lengths in the map and through the network, metres), ratio (image_m / map_m).\n\n"
            "With a scene, roads are compared within its valid-data area; without one, within "
            "the network's bounding box. Tolerance empty or 0: the road width (7 m by default)."
        )

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: D102
        self.addParameter(
            QgsProcessingParameterFeatureSource(self.INPUT, "Road network (lines extracted from imagery)", [QgsProcessing.TypeVectorLine])
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(self.MAP, "Road map (lines, any CRS)", [QgsProcessing.TypeVectorLine])
        )
        self.addParameter(
            QgsProcessingParameterRasterLayer(self.IMAGE, "Scene the network comes from (optional: compare within its valid-data area)", optional=True)
        )
        tolerance = QgsProcessingParameterDistance(
            self.TOLERANCE, "Tolerance (m; empty or 0: the road width)", None, optional=True, minValue=0.0
        )
        tolerance.setDefaultUnit(QgsUnitTypes.DistanceMeters)
        self.addParameter(tolerance)
        self.addParameter(QgsProcessingParameterNumber(self.WIDTH, "Road width (m)", QgsProcessingParameterNumber.Double, 7.0, minValue=0.1))
        for name, (_, description) in self.LAYERS.items():
            self.addParameter(QgsProcessingParameterVectorDestination(name, description, QgsProcessing.TypeVectorLine))

    def processAlgorithm(
        self, parameters: Dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> Dict[str, Any]:
        """Hand both layers to ``geoseg compare --format gpkg`` as files and copy its four layers to the destinations."""
        source = self.parameterAsSource(parameters, self.INPUT, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.INPUT))
        if self.parameterAsSource(parameters, self.MAP, context) is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.MAP))
        formats = ["gpkg", "shp", "geojson"]
        # Layers that are not such files (memory layers, selections, databases) are exported as they are, in their own CRS.
        network, network_layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, self.INPUT, context, formats, "gpkg", feedback
        )
        road_map, map_layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, self.MAP, context, formats, "gpkg", feedback
        )
        crs = source.sourceCrs()  # geoseg writes in the network's CRS...
        args = ["compare", network, road_map]
        if self.parameterAsRasterLayer(parameters, self.IMAGE, context) is not None:
            scene, crs = self.scene_file(parameters, self.IMAGE, context)  # ...or in the scene's, when given
            args += ["--image", scene]
        tolerance_given = self.parameterAsString(parameters, self.TOLERANCE, context).strip() != ""
        tolerance = self.parameterAsDouble(parameters, self.TOLERANCE, context)
        if tolerance_given and tolerance > 0:
            args += ["--tolerance-m", repr(tolerance)]
        args += ["--road-width-m", repr(self.parameterAsDouble(parameters, self.WIDTH, context))]
        if network_layer:
            args += ["--network-layer", network_layer]
        if map_layer:
            args += ["--map-layer", map_layer]

        results: Dict[str, Any] = {}
        with work_folder() as folder:
            self.geoseg([*args, "-o", folder, "--format", "gpkg"], feedback)
            changes = os.path.join(folder, os.path.splitext(os.path.basename(network))[0] + "_changes.gpkg")
            if not os.path.isfile(changes):
                raise QgsProcessingException(f"geoseg finished but wrote no change layers at {changes}")
            for name, (layer, _) in self.LAYERS.items():
                destination = self.parameterAsOutputLayer(parameters, name, context)
                copy_vector_layer(f"{changes}|layername={layer}", destination, crs, context, QgsWkbTypes.LineString)
                results[name] = destination
        return results
