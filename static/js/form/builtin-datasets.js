// What the form's hint says of each built-in dataset. The served schema lists their names
// only; these facts are app/spec's DATASETS (and `noise`, worker/datasets.py's
// DEFAULT_NOISE), and tests/browser/test_form_schema.py holds this copy to them.
export const BUILTIN_DATASETS = {
  digits: {
    task: "classification", classes: 10, features: 64, description: "scikit-learn 8x8 digits, 1,797",
  },
  breast_cancer: {
    task: "classification", classes: 2, features: 30, description: "scikit-learn breast cancer, 569 x 30",
  },
  wine: { task: "classification", classes: 3, features: 13, description: "scikit-learn wine, 178 x 13" },
  moons: {
    task: "classification", classes: 2, features: 2, generated: true, samples: 500, noise: 0.25,
    description: "two moons",
  },
  noisy_regression: {
    task: "regression", classes: 0, features: 1, generated: true, samples: 60, noise: 0.3,
    description: "few noisy samples of a smooth curve; over-fits readily",
  },
  periodic_series: {
    task: "classification", classes: 4, features: 64, generated: true, samples: 800, noise: 0.5,
    description: "noisy waves of four frequencies, 64 steps; classify the frequency",
  },
};
