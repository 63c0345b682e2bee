// Load a TF.js graph model (MODEL_DIR/NAME.json + its weight shards) from files, for the
// reference scripts beside this one (gear_tfjs_reference.js, mobilefacenet_tfjs_reference.js).
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

async function loadGraphModel(modelDir, name) {
  const spec = JSON.parse(fs.readFileSync(path.join(modelDir, `${name}.json`)));
  const shards = spec.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(modelDir, p))));
  const blob = Buffer.concat(shards);
  return tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: spec.modelTopology,
    weightSpecs: spec.weightsManifest.flatMap((g) => g.weights),
    weightData: blob.buffer.slice(blob.byteOffset, blob.byteOffset + blob.byteLength),
    format: spec.format, generatedBy: spec.generatedBy, convertedBy: spec.convertedBy,
    signature: spec.signature,
  }));
}

module.exports = { loadGraphModel };
