"""Results out of twin in other formats: forecasts as FHIR R4 Observations."""

from twin.export.fhir_forecast import forecast_bundle, write_bundle

__all__ = ["forecast_bundle", "write_bundle"]
