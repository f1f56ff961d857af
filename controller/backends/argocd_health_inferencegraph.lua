-- Sluice's Argo CD health check for KServe InferenceGraphs (serving.kserve.io/v1alpha1).
-- Argo CD ships none for this kind (its resource_customizations/serving.kserve.io has checks for
-- InferenceService and LLMInferenceService only), so without one it shows a graph with no health.
-- This one follows the graph's Ready condition, as KServe's controller sets it. To use it on a
-- cluster, put it in argocd-cm under resource.customizations.health.serving.kserve.io_InferenceGraph.
-- Copyright The Sluice Authors. Licensed under the Apache License, Version 2.0.
local health_status = {}
health_status.status = "Progressing"
health_status.message = "Waiting for InferenceGraph to report status..."

if obj.status == nil or obj.status.conditions == nil then
  return health_status
end

for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Stopped" and condition.status == "True" then
    health_status.status = "Suspended"
    health_status.message = "InferenceGraph is Stopped"
    return health_status
  end
end

for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    if condition.status == "True" then
      health_status.status = "Healthy"
      health_status.message = "InferenceGraph is ready."
      return health_status
    end
    if condition.status == "False" then
      health_status.status = "Degraded"
    end
    local msg = "Ready | " .. condition.status
    if condition.reason ~= nil and condition.reason ~= "" then
      msg = msg .. " | " .. condition.reason
    end
    if condition.message ~= nil and condition.message ~= "" then
      msg = msg .. " | " .. condition.message
    end
    health_status.message = msg
    return health_status
  end
end

return health_status
