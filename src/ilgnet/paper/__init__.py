"""The paper, regenerated: a campaign of training runs that fills Tables 2-4 (`plans`, `campaign`), and one report
of every table and figure beside the paper's own figures (`tables`, `timing`, `figures`, `report`)."""
