//! Browser glue: owns every JavaScript object and drives the engine.
