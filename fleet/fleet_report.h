// What streamdistill-fleet writes: the summary JSON line, and in the output folder fleet.csv,
// map50.csv, budget.csv, server_usage.csv, fleet.md and fleet.png. Columns: docs/fleet.md.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/base/status.h"
#include "fleet/fleet_run.h"

namespace sd {

// `lone`: the lone camera's run, when there was one.
nlohmann::json FleetSummary(const FleetRun& fleet, const std::optional<FleetRun>& lone);

// Everything but the plot.
Status WriteFleetTables(const std::string& out_dir, const FleetRun& fleet, const nlohmann::json& summary);

// fleet.png from map50.csv with gnuplot (a separate step: a machine without gnuplot still
// gets every figure).
Status PlotFleetMap50(const std::string& out_dir, const FleetRun& fleet);

}  // namespace sd
